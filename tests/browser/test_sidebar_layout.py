"""The viewer sidebar at 1280×800 and 1600×1000 (issue #17 §2): with a two-line status message
and the "Starting point" box nothing overlaps (the Scan-labels/Save block never covers the
opacity slider, the window presets or the MPR checkbox); in check and spot-check mode the verdict
form and the window presets fit without scrolling; read-only review never says "Unsaved
changes"."""

from __future__ import annotations

import os

import pytest

from qc.models import SpotCheck, Verdict
from tests.browser.conftest import log_in, wait_viewer_ready
from tests.qc.conftest import decide, open_checks, save, submit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = [(1280, 800), (1600, 1000)]
SHOTS = os.environ.get("CURATECT_SHOTS")  # a folder: screenshots for the closing note

# The controls a reader reaches for; none may cover another.
CONTROLS = [
    "#tools-heading",
    ".tool-buttons",
    "#brush-size",
    "#grow-tolerance",
    "#grow-radius",
    "#undo",
    "#class-picker",
    "#labels-visible",
    "#labels-opacity",
    "#window-presets",
    "#mpr-toggle",
    "#scan-labels",
    "#preseg-banner",
    "#save",
    "#submit",
    "#save-status",
    "#review-panel",
    "#findings-panel",
]

# For each visible control: its box, and whether the element at each corner and at its centre
# (after scrolling it into view) is the control itself: a pinned block over it would answer.
PROBE = """(selectors) => {
  const out = [];
  for (const sel of selectors) {
    const el = document.querySelector(sel);
    if (!el || el.closest('[hidden]') || getComputedStyle(el).display === 'none') continue;
    const r0 = el.getBoundingClientRect();
    if (r0.width === 0 || r0.height === 0) continue;
    // Boxes in the coordinates of the block that scrolls them: they compare within a block.
    const box = el.closest('.sidebar-scroll, .actions') || document.querySelector('.sidebar');
    const b = box.getBoundingClientRect();
    const top = r0.top - b.top + box.scrollTop, bottom = r0.bottom - b.top + box.scrollTop;
    el.scrollIntoView({block: 'nearest'});
    const r = el.getBoundingClientRect();
    const pts = [[r.left + r.width / 2, r.top + r.height / 2], [r.left + 2, r.top + 2],
                 [r.right - 2, r.top + 2], [r.left + 2, r.bottom - 2], [r.right - 2, r.bottom - 2]];
    const covered = pts.filter(([x, y]) => {
      const hit = document.elementFromPoint(x, y);
      return !(hit && (el.contains(hit) || hit.contains(el)));
    }).length;
    out.push({sel, covered, block: box.className, top, bottom, left: r0.left, right: r0.right});
  }
  return out;
}"""


def intersect(a: dict, b: dict) -> bool:
    return (
        a["left"] < b["right"]
        and b["left"] < a["right"]
        and a["top"] < b["bottom"]
        and b["top"] < a["bottom"]
    )


def assert_nothing_overlaps(page, where: str) -> list[dict]:
    boxes = page.evaluate(PROBE, CONTROLS)
    covered = [b["sel"] for b in boxes if b["covered"]]
    assert not covered, f"{where}: covered by another block: {covered}"
    nested = {("#review-panel", "#findings-panel")}
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if (a["sel"], b["sel"]) in nested or a["block"] != b["block"]:
                continue
            assert not intersect(a, b), f"{where}: {a['sel']} and {b['sel']} overlap: {a} {b}"
    blocks = page.evaluate(
        """() => [...document.querySelectorAll('.sidebar-scroll, .sidebar .actions')].map((e) => {
          const r = e.getBoundingClientRect();
          return {sel: e.className, top: r.top, bottom: r.bottom, left: r.left, right: r.right};
        })"""
    )
    assert len(blocks) == 2 and not intersect(*blocks), f"{where}: the sidebar blocks overlap: {blocks}"
    page.evaluate(
        "() => { for (const s of document.querySelectorAll('.sidebar, .sidebar-scroll')) s.scrollTop = 0; }"
    )
    return boxes


def two_line_status_and_starting_point(page) -> None:
    page.evaluate(
        """() => {
      const status = document.querySelector('#save-status');
      status.textContent = 'Saved revision 3 at 00:31. The checkers were told; nothing else is waiting.';
      status.dataset.kind = 'ok';
      const banner = document.querySelector('#preseg-banner');
      banner.hidden = false;
      document.querySelector('#preseg-text').textContent =
        'Starting point: the baseline pre-segmentation (lungs by threshold, lesions by HU ranges).';
    }"""
    )


def shot(page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"))


def fits_without_scrolling(page, selector: str, where: str) -> None:
    page.evaluate(
        "() => { for (const s of document.querySelectorAll('.sidebar, .sidebar-scroll, .sidebar .actions')) s.scrollTop = 0; }"
    )
    box = page.evaluate(
        f"() => {{ const r = document.querySelector('{selector}').getBoundingClientRect(); return [r.top, r.bottom]; }}"
    )
    height = page.evaluate("innerHeight")
    assert box[0] >= 0 and box[1] <= height, f"{where}: {selector} at {box} is below the fold ({height} px)"


def test_annotate_sidebar_nothing_overlaps(live_server, page, phantom_scan):
    ph = phantom_scan(slices=24, size=96, seed=11)
    log_in(page, live_server.url)
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.goto(f"{live_server.url}/viewer/{ph.campaign.pk}/{ph.scan.pk}/")
        wait_viewer_ready(page)
        two_line_status_and_starting_point(page)
        shot(page, f"annotate-{width}x{height}")
        boxes = assert_nothing_overlaps(page, f"annotate {width}×{height}")
        assert {"#labels-opacity", "#window-presets", "#mpr-toggle", "#preseg-banner"} <= {
            b["sel"] for b in boxes
        }
        # Save and Submit are whole on screen without scrolling anything (the footer once shrank
        # with the tools and cut them in half under the "Starting point" box).
        fits_without_scrolling(page, "#save", f"annotate {width}×{height}")
        fits_without_scrolling(page, "#submit", f"annotate {width}×{height}")


def test_check_and_spot_check_sidebars_fit_and_never_say_unsaved(live_server, page, phantom_scan, demo):
    ph = phantom_scan(slices=24, size=96, seed=12)
    campaign, scan, annotator = ph.campaign, ph.scan, demo["annotator"]
    save(annotator, campaign, scan, (ph.lesions > 0).astype("uint8"))
    submit(annotator, campaign, scan)
    check_a, check_b = open_checks(campaign, scan)
    base = live_server.url

    log_in(page, base, check_a.checker.username)
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.goto(f"{base}/viewer/{campaign.pk}/{scan.pk}/?check={check_a.pk}")
        wait_viewer_ready(page)
        page.keyboard.press("]")  # a key that edits in annotate mode changes nothing here
        page.mouse.wheel(0, 0)
        shot(page, f"check-{width}x{height}")
        assert "Unsaved" not in page.inner_text(".sidebar")
        assert page.evaluate("curatect.saveStatus") != "Unsaved changes"
        assert "No revision yet" not in page.inner_text(".sidebar")  # the reviewer sees revision 0
        assert "Revision 0 on screen, read-only" in page.inner_text("#save-status")
        assert_nothing_overlaps(page, f"check {width}×{height}")
        fits_without_scrolling(page, "#submit-verdict", f"check {width}×{height}")
        fits_without_scrolling(page, "#window-presets", f"check {width}×{height}")

    decide(check_a, "pass")
    decide(check_b, "pass")
    spot = SpotCheck.objects.get(verdict=Verdict.PENDING)
    page.context.clear_cookies()
    log_in(page, base, spot.senior.username)
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.goto(f"{base}/viewer/{campaign.pk}/{scan.pk}/?spot_check={spot.pk}")
        wait_viewer_ready(page)
        shot(page, f"spot-check-{width}x{height}")
        assert "Unsaved" not in page.inner_text(".sidebar")
        assert_nothing_overlaps(page, f"spot check {width}×{height}")
        fits_without_scrolling(page, "#submit-verdict", f"spot check {width}×{height}")
        fits_without_scrolling(page, "#window-presets", f"spot check {width}×{height}")

"""Issue #17 §1 and §3 in the viewer: slices numbered from 1 at the head end (Home = slice 1,
Down = next = one slice caudal), opening on the first labelled slice with jumps between labelled
slices; a finding placement armed once by F and cancelled by Esc; markers that O hides."""

from __future__ import annotations

import numpy as np
import pytest

from tests.browser.conftest import log_in, wait_viewer_ready
from tests.qc.conftest import open_checks, save, submit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def status(page) -> str:
    return page.text_content("#viewer-status") or ""


def test_slices_count_from_the_head_and_the_viewer_opens_on_the_first_labelled_slice(
    live_server, page, phantom_scan, demo
):
    ph = phantom_scan(slices=32, size=128, seed=5)
    n = ph.scan.slices
    save(demo["annotator"], ph.campaign, ph.scan, (ph.lesions > 0).astype("uint8"))
    labelled_z = sorted({int(z) for z in np.nonzero(ph.lesions.any(axis=(1, 2)))[0]})
    top_labelled = labelled_z[-1]  # z grows towards the head: the highest z is the first from the top

    log_in(page, live_server.url, demo["annotator"].username)
    page.goto(f"{live_server.url}/viewer/{ph.campaign.pk}/{ph.scan.pk}/")
    wait_viewer_ready(page)
    assert page.evaluate("curatect.sliceIndex()") == top_labelled
    assert status(page).startswith(f"Slice {n - top_labelled} / {n}")

    page.locator("#view-axial").hover()
    page.keyboard.press("Home")  # first = top = head end
    page.wait_for_function(f"() => curatect.sliceIndex() === {n - 1}")
    assert status(page).startswith(f"Slice 1 / {n}")
    page.keyboard.press("ArrowDown")  # next = one slice towards the feet
    page.wait_for_function(f"() => curatect.sliceIndex() === {n - 2}")
    assert status(page).startswith(f"Slice 2 / {n}")
    page.keyboard.press(".")  # next labelled slice
    page.wait_for_function(f"() => curatect.sliceIndex() === {top_labelled}")
    page.keyboard.press("End")
    page.wait_for_function("() => curatect.sliceIndex() === 0")
    assert status(page).startswith(f"Slice {n} / {n}")
    page.keyboard.press(",")  # previous labelled slice, from the bottom: the lowest labelled
    page.wait_for_function(f"() => curatect.sliceIndex() === {labelled_z[0]}")


def test_a_finding_placement_is_armed_once_esc_cancels_and_markers_hide(
    live_server, page, phantom_scan, demo
):
    ph = phantom_scan(slices=32, size=128, seed=5)
    annotator = demo["annotator"]
    save(annotator, ph.campaign, ph.scan, (ph.lesions > 0).astype("uint8"))
    submit(annotator, ph.campaign, ph.scan)
    check_a, _ = open_checks(ph.campaign, ph.scan)
    z, y, x, _ = ph.deepest_lesion_voxel()

    log_in(page, live_server.url, check_a.checker.username)
    page.goto(f"{live_server.url}/viewer/{ph.campaign.pk}/{ph.scan.pk}/?check={check_a.pk}")
    wait_viewer_ready(page)
    cx, cy = page.evaluate(f"curatect.canvasPointOf({z}, {y}, {x})")
    box = page.locator("#view-axial").bounding_box()

    # Not armed: a click places nothing, and the panel says what a click does.
    assert "window/level" in page.text_content("#finding-hint")
    page.mouse.click(box["x"] + cx, box["y"] + cy)
    assert page.evaluate("curatect.findings()") == []

    # F arms one placement; Esc cancels it.
    page.keyboard.press("f")
    assert "places finding 1" in page.text_content("#finding-hint")
    page.keyboard.press("Escape")
    assert page.evaluate("curatect.tool()") == "windowLevel"
    page.mouse.click(box["x"] + cx, box["y"] + cy)
    assert page.evaluate("curatect.findings()") == []

    # Armed, one click places one finding and disarms.
    page.click("#finding-tool")
    page.mouse.click(box["x"] + cx, box["y"] + cy)
    page.wait_for_function("() => curatect.findings().length === 1")
    assert page.evaluate("curatect.tool()") == "windowLevel"
    assert f"slice {ph.scan.slices - z}" in page.text_content("#review-findings")
    page.mouse.click(box["x"] + cx + 3, box["y"] + cy)
    assert len(page.evaluate("curatect.findings()")) == 1

    # The marker is a hollow ring (the voxel stays visible); O hides it and shows it again.
    page.wait_for_function("() => curatect.markers().length === 1")
    background = page.eval_on_selector(".finding-marker", "m => getComputedStyle(m).backgroundColor")
    assert background in ("rgba(0, 0, 0, 0)", "transparent")
    page.locator("#view-axial").hover()
    page.keyboard.press("o")
    page.wait_for_function("() => curatect.markers().length === 0")
    page.keyboard.press("o")
    page.wait_for_function("() => curatect.markers().length === 1")

    # Fail asks once, then says what it recorded.
    page.fill("#review-findings textarea", "lesion not labelled")
    page.check("input[name=review-verdict][value=fail]")
    page.click("#submit-verdict")
    assert "send it back with 1 finding" in page.text_content(".confirm-box")
    page.click(".confirm-yes")
    page.wait_for_function("() => curatect.saveStatus.startsWith('Fail recorded')")
    assert "Fail recorded — sent back with 1 finding" in page.text_content("#review-notice")
    check_a.refresh_from_db()
    assert check_a.verdict == "fail"

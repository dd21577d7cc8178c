"""QC in the viewer: a checker opens the viewer in check mode, places a finding with a click on
the image and fails the revision; the API holds the finding at the clicked slice; the annotator
then sees it in the viewer (panel and marker) and on the worklist."""

from __future__ import annotations

import pytest

from tests.browser.conftest import log_in, wait_viewer_ready
from tests.qc.conftest import decide, open_checks, save, submit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def switch_user(page, base_url: str, username: str) -> None:
    page.context.clear_cookies()
    log_in(page, base_url, username)


def click_voxel(page, z: int, y: int, x: int) -> None:
    cx, cy = page.evaluate(f"curatect.canvasPointOf({z}, {y}, {x})")
    box = page.locator("#view-axial").bounding_box()
    page.mouse.click(box["x"] + cx, box["y"] + cy)


def test_checker_fails_in_the_viewer_and_the_annotator_sees_the_finding(
    live_server, page, phantom_scan, demo
):
    ph = phantom_scan(slices=32, size=128, seed=5)
    campaign, scan = ph.campaign, ph.scan
    annotator = demo["annotator"]
    save(annotator, campaign, scan, (ph.lesions > 0).astype("uint8"))
    submit(annotator, campaign, scan)
    check_a, check_b = open_checks(campaign, scan)
    base = live_server.url
    z, y, x, _ = ph.deepest_lesion_voxel()

    # The checker: check mode shows the revision under review, read-only, with the finding tool.
    log_in(page, base, check_a.checker.username)
    page.goto(f"{base}/viewer/{campaign.pk}/{scan.pk}/?check={check_a.pk}")
    wait_viewer_ready(page)
    assert page.evaluate("curatect.reviewing") is True
    assert page.evaluate("curatect.tool()") == "windowLevel"  # nothing armed until F / the button
    assert page.evaluate("curatect.labelVoxelCount()") == int((ph.lesions > 0).sum())
    assert page.is_disabled("button[data-tool=brush]")
    assert f"Check {check_a.pk}" in page.text_content("#review-heading")

    page.select_option("#finding-kind", "missed_lesion")
    page.click("#finding-tool")
    click_voxel(page, z, y, x)
    page.wait_for_function("() => curatect.findings().length === 1")
    placed = page.evaluate("curatect.findings()[0]")
    assert placed["slice"] == z and placed["kind"] == "missed_lesion"
    assert abs(placed["position"][0] - x) <= 1 and abs(placed["position"][1] - y) <= 1
    assert len(page.evaluate("curatect.markers()")) == 1  # the marker on the slice shown
    page.fill("#review-findings textarea", "lesion not labelled")
    page.check("input[name=review-verdict][value=fail]")
    page.click("#submit-verdict")
    page.click(".confirm-yes")
    page.wait_for_function("() => curatect.saveStatus.startsWith('Fail recorded')")
    assert page.evaluate("curatect.saveStatus") == "Fail recorded — sent back with 1 finding"

    response = page.request.get(f"{base}/api/qc/checks/{check_a.pk}/")
    assert response.ok, response.text()
    detail = response.json()
    assert detail["verdict"] == "fail"
    (finding,) = detail["findings"]
    assert finding["slice"] == z and finding["kind"] == "missed_lesion"
    assert finding["position"] == placed["position"]
    assert finding["text"] == "lesion not labelled"

    # The second checker passes (through the service): the round closes, the scan needs revision.
    decide(check_b, "pass")

    # The annotator: a "Findings" link on the worklist, and the finding in the viewer.
    switch_user(page, base, annotator.username)
    page.wait_for_selector("a.findings-link")
    assert page.get_attribute("a.findings-link", "href") == f"/qc/findings/{campaign.pk}/{scan.pk}/"
    far = 0 if z > 16 else 31
    page.goto(f"{base}/viewer/{campaign.pk}/{scan.pk}/?slice={far}")
    wait_viewer_ready(page)
    assert page.evaluate("curatect.annotationState()") == "needs_revision"
    assert page.evaluate("curatect.sliceIndex()") == far  # ?slice= jumped there
    panel = page.inner_text("#findings-panel")
    assert "checker A" in panel and "lesion not labelled" in panel
    assert check_a.checker.username not in panel and check_b.checker.username not in panel
    assert page.evaluate("curatect.markers()") == []  # not on this slice
    page.click("#findings-panel button.jump")
    page.wait_for_function(f"() => curatect.sliceIndex() === {z}")
    # Markers are redrawn after the slice's render, a moment after the jump.
    page.wait_for_function("() => curatect.markers().length > 0", timeout=10_000)
    markers = page.evaluate("curatect.markers()")
    assert len(markers) == 1 and markers[0]["slice"] == z
    assert page.evaluate("curatect.tool()") == "brush"  # the annotator still edits

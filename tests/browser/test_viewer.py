"""The annotator's path through the browser: worklist → viewer → 3D region growing → save →
reload → submit, checked against the API; plus a stale save (409) and a full 300-slice 512²
scan loading every frame (its load time: bench/viewer.py)."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard

from tests.browser.conftest import ARTIFACTS, log_in, wait_viewer_ready

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def annotation(page, base_url: str, campaign_id: int, scan_id: int) -> dict:
    response = page.request.get(f"{base_url}/api/campaigns/{campaign_id}/scans/{scan_id}/annotation/")
    assert response.ok, response.text()
    return response.json()


def click_voxel(page, z: int, y: int, x: int) -> None:
    cx, cy = page.evaluate(f"curatect.canvasPointOf({z}, {y}, {x})")
    box = page.locator("#view-axial").bounding_box()
    page.mouse.click(box["x"] + cx, box["y"] + cy)


def grown_mask(result: dict, shape: tuple[int, int, int]) -> np.ndarray:
    import base64

    box = np.frombuffer(zstandard.ZstdDecompressor().decompress(base64.b64decode(result["data"])), np.uint8)
    mask = np.zeros(shape, bool)
    (z, y, x), (d, h, w) = result["offset"], result["shape"]
    mask[z : z + d, y : y + h, x : x + w] = box.reshape(d, h, w) > 0
    return mask


def test_annotator_grows_a_lesion_saves_reloads_and_submits(live_server, page, phantom_scan):
    ph = phantom_scan(slices=64, size=256, seed=3)
    scan, campaign = ph.scan, ph.campaign
    z, y, x, lesion_class = ph.deepest_lesion_voxel()
    base = live_server.url

    # Worklist → the batch's next unfinished scan.
    log_in(page, base)
    assert page.url.endswith("/worklist/")
    page.click(".next-unfinished")
    page.wait_for_url(f"**/viewer/{campaign.pk}/{scan.pk}/")
    wait_viewer_ready(page)
    assert page.evaluate("curatect.labelVoxelCount()") == 0
    assert "scan 1 of 1" in page.inner_text("#batch-position")

    # Region growing from a click inside the lesion, with the lesion's class.
    page.keyboard.press(str(lesion_class))
    page.keyboard.press("g")
    assert page.evaluate("curatect.tool()") == "grow"
    click_voxel(page, z, y, x)
    page.wait_for_function("() => curatect.lastGrow !== null")
    grow = page.evaluate("curatect.lastGrow")
    count = page.evaluate("curatect.labelVoxelCount()")
    assert grow["voxels"] > 0 and count == grow["voxels"]
    assert page.evaluate("curatect.classCounts()") == {str(lesion_class): count}
    mask = grown_mask(grow, ph.lesions.shape)
    assert mask[z, y, x]
    inside = (mask & (ph.lesions > 0)).sum() / mask.sum()
    assert inside > 0.5, f"only {inside:.0%} of the grown region is lesion"
    assert page.evaluate("curatect.dirty()")

    # Save (Ctrl+S): the API's head now holds exactly the client's mask.
    page.keyboard.press("Control+s")
    page.wait_for_function("() => curatect.saveStatus.startsWith('Saved')")
    assert not page.evaluate("curatect.dirty()")
    saved = annotation(page, base, campaign.pk, scan.pk)
    assert saved["state"] == "in_progress"
    assert saved["head"]["voxel_counts"] == {str(lesion_class): count}
    assert saved["head"]["time_spent_s"] > 0
    page.wait_for_timeout(300)  # let the overlay render settle for the artifact
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-region-grow-overlay.png"))

    # Reload: the same mask comes back from the server.
    page.reload()
    wait_viewer_ready(page)
    assert page.evaluate("curatect.labelVoxelCount()") == sum(saved["head"]["voxel_counts"].values())
    assert page.evaluate("curatect.classCounts()") == saved["head"]["voxel_counts"]
    assert page.evaluate("curatect.headRevisionId()") == saved["head"]["id"]

    # Scan label, then submit for checking.
    page.select_option("#scan-label-diagnosis", "COVID-19")
    page.click("#submit")
    page.click(".confirm-yes")  # asked once: the scan becomes read-only
    page.wait_for_function(
        "() => curatect.saveStatus === 'Submitted for checking' || curatect.saveStatus.startsWith('Not')"
    )
    assert page.evaluate("curatect.saveStatus") == "Submitted for checking"
    submitted = annotation(page, base, campaign.pk, scan.pk)
    assert submitted["state"] == "submitted"
    assert submitted["head"]["scan_labels"] == {"diagnosis": "COVID-19"}
    assert page.locator("#save").is_disabled()


def test_a_stale_save_shows_the_conflict_and_offers_reload(live_server, chromium, page, phantom_scan):
    ph = phantom_scan(slices=48, size=128, seed=5)
    z, y, x, lesion_class = ph.deepest_lesion_voxel()
    url = f"{live_server.url}/viewer/{ph.campaign.pk}/{ph.scan.pk}/"
    log_in(page, live_server.url)
    other = page.context.new_page()  # same session, second tab
    other.console_lines = []
    for tab in (page, other):
        tab.goto(url)
        wait_viewer_ready(tab)

    # The second tab saves first …
    other.select_option("#scan-label-diagnosis", "COVID-19")
    other.keyboard.press("Control+s")
    other.wait_for_function("() => curatect.saveStatus.startsWith('Saved')")

    # … so the first tab's save is stale: 409, shown as a conflict with a reload button.
    page.keyboard.press(str(lesion_class))
    page.keyboard.press("g")
    click_voxel(page, z, y, x)
    page.wait_for_function("() => curatect.lastGrow !== null")
    page.click("#save")
    page.wait_for_function("() => curatect.saveStatus.startsWith('Conflict')")
    assert page.locator("#conflict").is_visible()
    page.click("#reload")
    wait_viewer_ready(page)
    assert page.evaluate("curatect.labelVoxelCount()") == 0
    assert page.input_value("#scan-label-diagnosis") == "COVID-19"


def test_a_300_slice_512_scan_loads_every_frame(live_server, page, phantom_scan):
    """A full-size scan (300 × 512², ~157 MB of frames) loads completely: every frame arrives,
    the load steps finish in order, and the last slice can be shown. Its load time is measured
    by bench/viewer.py, not here."""
    ph = phantom_scan(slices=300, size=512, seed=11)
    log_in(page, live_server.url)

    page.goto(f"{live_server.url}/viewer/{ph.campaign.pk}/{ph.scan.pk}/")
    wait_viewer_ready(page, timeout_ms=180_000)

    figures = page.evaluate(
        "({first: curatect.firstImageMs, loaded: curatect.loadTimeMs, progress: curatect.progress,"
        " marks: curatect.marks})"
    )
    assert figures["progress"][-1][1] == 300  # frames loaded
    assert 0 < figures["first"] <= figures["loaded"]
    assert "frames" in figures["marks"]
    page.evaluate("curatect.canvasPointOf(299, 256, 256)")  # shows the top slice
    assert page.evaluate("curatect.currentZ()") == 299

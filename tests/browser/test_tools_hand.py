"""Tools that do what the hand meant (issue #17 §4), in the browser: a grow says its size at once,
Alt+wheel widens or narrows the last grow in one undo step, a click relabels a connected region or removes it,
and "paint inside lungs only" keeps the brush in the scan's lung mask (or says there is none)."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import zstandard

from tests.browser.conftest import log_in, wait_viewer_ready
from tests.browser.test_viewer import click_voxel

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def lung_phantom(demo, tmp_path):
    """A 40 × 160² phantom scan batched to the demo annotator: (scan, campaign, truth)."""
    from core.models import Scan
    from core.services.batches import batch_build
    from demo.phantom import load_ground_truth, write_phantom_study
    from imaging.ingest.service import ingest_path

    source = tmp_path / "phantom"
    folder = write_phantom_study(
        source, slices=40, rows=160, cols=160, seed=5, patient_id="HAND-5", patient_name="HAND^5"
    )
    truth = load_ground_truth(folder)
    (folder / "ground_truth.npz").unlink()
    report = ingest_path(source, institution=demo["campaign"].institution, campaign_id=demo["campaign"].pk)
    assert report.scans_created, report.as_dict()
    shutil.rmtree(source, ignore_errors=True)
    scan = Scan.objects.get(pk=report.scans_created[0])
    batch_build(
        actor=demo["manager"], campaign=demo["campaign"], scan_ids=[scan.pk], annotator=demo["annotator"]
    )
    return scan, demo["campaign"], truth


def open_viewer(page, base: str, campaign, scan) -> None:
    log_in(page, base)
    page.goto(f"{base}/viewer/{campaign.pk}/{scan.pk}/")
    wait_viewer_ready(page)


def seed_in_lesion(truth) -> tuple[int, int, int, int]:
    from scipy import ndimage

    labels, _ = ndimage.label(truth.lesions > 0)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    depth = ndimage.distance_transform_edt(labels == int(np.argmax(sizes)))
    z, y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(z), int(y), int(x), int(truth.lesions[z, y, x])


def alt_wheel(page, dy: int) -> None:
    box = page.locator("#view-axial").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.keyboard.down("Alt")
    page.mouse.wheel(0, dy)
    page.keyboard.up("Alt")


def test_grow_says_its_size_widens_live_in_one_undo_step_and_relabels(live_server, page, lung_phantom):
    scan, campaign, truth = lung_phantom
    z, y, x, lesion_class = seed_in_lesion(truth)
    open_viewer(page, live_server.url, campaign, scan)

    # No lung mask was computed for this scan: the page says so, and painting is unrestricted.
    page.wait_for_selector("#lungs-only-note[data-state=missing]")
    assert "No lung mask for this scan" in page.inner_text("#lungs-only-note")

    # A grow shows its voxels and mm³ at once.
    page.keyboard.press(str(lesion_class))
    page.keyboard.press("g")
    click_voxel(page, z, y, x)
    page.wait_for_function("() => curatect.lastGrow !== null")
    first = page.evaluate("curatect.lastGrow")
    status = page.evaluate("curatect.saveStatus")
    assert f"Grew {first['voxels']:,} voxels · " in status and " mm³" in status
    shown_mm3 = float(re.search(r"· ([\d,.]+) mm³", status).group(1).replace(",", ""))
    assert shown_mm3 == pytest.approx(first["volume_mm3"], abs=0.1)
    assert page.evaluate("curatect.labelVoxelCount()") == first["voxels"]

    # Alt+wheel up widens the last grow (no slice change); its paint replaces the first one.
    slice_before = page.evaluate("curatect.currentZ()")
    for _ in range(3):
        alt_wheel(page, -120)
        page.wait_for_function("() => curatect.saveStatus.includes('mm radius')")
    page.wait_for_timeout(500)  # let a coalesced last step land
    wide = page.evaluate("curatect.lastGrow")
    assert wide["voxels"] >= first["voxels"] and wide["leak_cut_mm"] is None
    assert page.evaluate("curatect.labelVoxelCount()") == wide["voxels"]
    assert page.evaluate("curatect.currentZ()") == slice_before

    # One undo removes the whole grow, widened or not; redo brings the widened one back.
    page.keyboard.press("Control+z")
    assert page.evaluate("curatect.labelVoxelCount()") == 0
    page.keyboard.press("Control+Shift+z")
    assert page.evaluate("curatect.labelVoxelCount()") == wide["voxels"]

    # Relabel: one click turns the connected region into the current class, one undo step.
    other = 2 if lesion_class != 2 else 1
    page.keyboard.press(str(other))
    page.keyboard.press("r")
    assert page.evaluate("curatect.tool()") == "relabel"
    click_voxel(page, z, y, x)
    page.wait_for_function(f"() => curatect.classCounts()['{other}'] === {wide['voxels']}")
    assert page.evaluate("curatect.classCounts()") == {str(other): wide["voxels"]}
    assert f"Relabelled {wide['voxels']:,} voxels" in page.evaluate("curatect.saveStatus")
    page.keyboard.press("Control+z")
    assert page.evaluate("curatect.classCounts()") == {str(lesion_class): wide["voxels"]}

    # Remove: one click erases the connected region in 3D (a wrong blob of a pre-segmentation),
    # whatever the current class; one undo step brings it back.
    page.keyboard.press("x")
    assert page.evaluate("curatect.tool()") == "remove"
    click_voxel(page, z, y, x)
    page.wait_for_function("() => Object.keys(curatect.classCounts()).length === 0")
    assert page.evaluate("curatect.labelVoxelCount()") == 0
    assert f"Removed {wide['voxels']:,} voxels" in page.evaluate("curatect.saveStatus")
    click_voxel(page, z, y, x)  # nothing left there: it says so, and changes nothing
    page.wait_for_function("() => curatect.saveStatus.startsWith('Nothing to remove there')")
    page.keyboard.press("Control+z")
    assert page.evaluate("curatect.classCounts()") == {str(lesion_class): wide["voxels"]}


def saved_labels(page, base: str, campaign, scan) -> np.ndarray:
    page.keyboard.press("Control+s")
    page.wait_for_function("() => curatect.saveStatus.startsWith('Saved')")
    response = page.request.get(f"{base}/api/campaigns/{campaign.pk}/scans/{scan.pk}/annotation/labels/")
    assert response.ok, response.text()
    raw = zstandard.ZstdDecompressor().decompress(response.body())
    return np.frombuffer(raw, np.uint8).reshape(scan.shape)


def stroke(page, z: int, y: int, x0: int, x1: int) -> None:
    cx0, cy = page.evaluate(f"curatect.canvasPointOf({z}, {y}, {x0})")
    cx1, _ = page.evaluate(f"curatect.canvasPointOf({z}, {y}, {x1})")
    box = page.locator("#view-axial").bounding_box()
    page.mouse.move(box["x"] + cx0, box["y"] + cy)
    page.mouse.down()
    page.mouse.move(box["x"] + cx1, box["y"] + cy, steps=12)
    page.mouse.up()


def test_the_brush_paints_inside_the_lungs_only_until_i_turns_it_off(live_server, page, lung_phantom):
    from modelassist.services.quantification import lung_mask_store

    scan, campaign, truth = lung_phantom
    lungs = truth.lungs > 0
    lung_mask_store(scan, truth.lungs)  # as the baseline pre-segmentation leaves it
    # A row through the right lung's outer edge: the stroke crosses into the chest wall.
    z = scan.shape[0] // 2
    y = int(np.argmax(lungs[z].sum(axis=1)))
    xs = np.flatnonzero(lungs[z, y])
    edge = int(xs.max())
    open_viewer(page, live_server.url, campaign, scan)
    page.wait_for_selector("#lungs-only-note[data-state=on]")
    assert page.is_checked("#lungs-only")

    page.keyboard.press("1")
    page.keyboard.press("b")
    stroke(page, z, y, edge - 12, edge + 12)
    inside_only = saved_labels(page, live_server.url, campaign, scan)
    assert inside_only.any() and not (inside_only.astype(bool) & ~lungs).any()

    page.keyboard.press("i")  # off: the same stroke now reaches the chest wall
    assert page.get_attribute("#lungs-only-note", "data-state") == "off"
    stroke(page, z, y, edge - 12, edge + 12)
    unrestricted = saved_labels(page, live_server.url, campaign, scan)
    assert (unrestricted.astype(bool) & ~lungs).any()

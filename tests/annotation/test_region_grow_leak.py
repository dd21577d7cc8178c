"""The region-growing brush does what the hand meant (issue #17 §4): a first click on a nodule
touching a vessel stops at the nodule (the leak check), the answer gives voxels and mm³, and
"paint inside lungs only" keeps the region in the scan's one lung mask.

The case: a 3.5 mm nodule (~290 voxels at 0.7 × 0.7 × 1.25 mm) whose side overlaps a 1.5 mm
vessel that runs through the whole field and has a branch. Measured on it: the plain grow at
the old default 40 mm radius takes 1,663 voxels (nodule and vessels); with the leak check
295 (cut at the neck 3.8 mm from the seed); clicks 1.4–2 mm off the centre give 320 and 311.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

from annotation import label_codec
from annotation.region_grow import grow_region
from core.services.batches import batch_build

SPACING = (0.7, 0.7, 1.25)  # x, y, z mm, as the scan's API gives it
SHAPE = (48, 96, 96)
CENTER = (24, 48, 48)  # z, y, x of the nodule
NODULE_MM = 3.5
VESSEL_MM = 1.5
WALL_X = 80  # from this x on: the chest wall (soft tissue), outside the lungs
PLEURAL_SEED = (24, 48, 76)  # the pleural nodule's centre (z, y, x)


def _mm_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z, y, x = np.indices(SHAPE)
    return (z - CENTER[0]) * SPACING[2], (y - CENTER[1]) * SPACING[1], (x - CENTER[2]) * SPACING[0]


def nodule_on_vessel(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(HU volume, nodule mask): lung at -850 ± 25 HU, the nodule at 30 HU, vessels at 40 HU."""
    rng = np.random.default_rng(seed)
    vol = (-850 + rng.normal(0, 25, SHAPE)).astype(np.int16)
    zm, ym, xm = _mm_grid()
    nodule = zm**2 + ym**2 + xm**2 <= NODULE_MM**2
    beside = NODULE_MM + VESSEL_MM - 1.0  # the vessel's axis: they overlap by 1 mm
    vessel = zm**2 + (ym - beside) ** 2 <= VESSEL_MM**2
    vessel |= (xm - 12) ** 2 + (ym - beside) ** 2 <= (0.8 * VESSEL_MM) ** 2  # a branch along z
    vessel &= ~nodule
    vol[nodule] = (30 + rng.normal(0, 15, nodule.sum())).astype(np.int16)
    vol[vessel] = (40 + rng.normal(0, 15, vessel.sum())).astype(np.int16)
    return vol, nodule


def pleural_nodule() -> tuple[np.ndarray, np.ndarray]:
    """(HU volume, lung mask): a 4 mm nodule whose side lies on the 40 HU chest wall."""
    vol = np.full(SHAPE, -850, dtype=np.int16)
    vol[:, :, WALL_X:] = 40
    zm, ym, xm = _mm_grid()
    centre_x = (PLEURAL_SEED[2] - CENTER[2]) * SPACING[0]  # 2.8 mm from the wall: it touches
    vol[zm**2 + ym**2 + (xm - centre_x) ** 2 <= 4.0**2] = 30
    lungs = np.zeros(SHAPE, dtype=np.uint8)
    lungs[:, :, :WALL_X] = 1
    return vol, lungs


# --- the grow itself ---------------------------------------------------------------------


def test_a_nodule_touching_a_vessel_leaks_at_40_mm_without_the_leak_check() -> None:
    vol, nodule = nodule_on_vessel()

    plain = grow_region(vol, CENTER, tolerance=120, spacing=SPACING, radius_mm=40)

    assert plain.voxels > 4 * nodule.sum()  # the case the reader tripped over


@pytest.mark.parametrize("shift", [(0, 0, 0), (0, -2, 2), (1, -3, 0)])
def test_the_leak_check_stops_at_the_nodule(shift) -> None:
    vol, nodule = nodule_on_vessel()
    seed = tuple(c + s for c, s in zip(CENTER, shift, strict=True))

    result = grow_region(vol, seed, tolerance=120, spacing=SPACING, radius_mm=40, leak_check=True)

    assert nodule.sum() <= result.voxels <= 1.15 * nodule.sum()
    assert result.leak_cut_mm is not None and result.leak_cut_mm < 10
    assert result.voxels_before_cut > 4 * nodule.sum()
    assert result.message.startswith("stopped at a narrow neck")


def test_the_leak_check_leaves_a_closed_lesion_and_one_larger_than_the_radius_alone() -> None:
    vol = np.full(SHAPE, -850, dtype=np.int16)
    zm, ym, xm = _mm_grid()
    ball = zm**2 + ym**2 + xm**2 <= 12.0**2
    vol[ball] = 30

    closed = grow_region(vol, CENTER, tolerance=120, spacing=SPACING, radius_mm=40, leak_check=True)
    larger = grow_region(vol, CENTER, tolerance=120, spacing=SPACING, radius_mm=8, leak_check=True)
    plain = grow_region(vol, CENTER, tolerance=120, spacing=SPACING, radius_mm=8)

    assert closed.voxels == ball.sum() and closed.leak_cut_mm is None
    assert larger.voxels == plain.voxels and larger.leak_cut_mm is None


def test_within_keeps_the_region_inside_the_lungs() -> None:
    vol, lungs = pleural_nodule()

    free = grow_region(vol, PLEURAL_SEED, tolerance=120, spacing=SPACING, radius_mm=20)
    inside = grow_region(vol, PLEURAL_SEED, tolerance=120, spacing=SPACING, radius_mm=20, within=lungs != 0)

    assert free.offset[2] + free.mask.shape[2] > WALL_X + 5  # into the chest wall
    assert inside.offset[2] + inside.mask.shape[2] <= WALL_X
    assert 0 < inside.voxels < free.voxels


# --- the API -----------------------------------------------------------------------------


@pytest.fixture
def scan_with(cast, import_phantoms):
    """scan_with(volume): an assigned scan whose volume is replaced by `volume` at SPACING."""

    def _make(volume: np.ndarray):
        scan = import_phantoms(1, slices=SHAPE[0], size=SHAPE[1])[0]
        batch_build(actor=cast.manager, campaign=cast.campaign, annotator=cast.annotator)
        np.save(Path(settings.MEDIA_ROOT) / scan.storage_dir / "volume.npy", volume)
        scan.spacing = list(SPACING)
        scan.save(update_fields=["spacing"])
        return scan

    return _make


def grow(api, cast, scan, **body):
    return api.post(
        f"/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/region-grow/",
        {"seed": list(CENTER), "tolerance": 120, "radius_mm": 40, **body},
        format="json",
    )


def test_the_first_click_is_conservative_and_says_voxels_and_mm3(cast, api, scan_with):
    vol, nodule = nodule_on_vessel()
    scan = scan_with(vol)
    api.force_authenticate(cast.annotator)

    first = grow(api, cast, scan).json()
    wide = grow(api, cast, scan, leak_check=False).json()

    assert nodule.sum() <= first["voxels"] <= 1.15 * nodule.sum()
    assert first["leak_cut_mm"] is not None and "narrow neck" in first["message"]
    assert first["volume_mm3"] == pytest.approx(first["voxels"] * 0.7 * 0.7 * 1.25, abs=0.1)
    assert wide["voxels"] > 4 * nodule.sum() and wide["leak_cut_mm"] is None


def test_grow_within_lungs_uses_the_scans_lung_mask(cast, api, scan_with):
    from modelassist.services.quantification import lung_mask_store

    vol, lungs = pleural_nodule()
    scan = scan_with(vol)
    api.force_authenticate(cast.annotator)

    without_mask = grow(api, cast, scan, within_lungs=True, seed=list(PLEURAL_SEED)).json()
    lung_mask_store(scan, lungs)
    with_mask = grow(api, cast, scan, within_lungs=True, seed=list(PLEURAL_SEED)).json()
    outside = grow(api, cast, scan, within_lungs=True, seed=[CENTER[0], CENTER[1], WALL_X + 4])

    assert without_mask["within_lungs"] is False  # no mask: unrestricted, and it says so
    assert without_mask["offset"][2] + without_mask["shape"][2] > WALL_X + 5
    assert with_mask["within_lungs"] is True
    assert with_mask["offset"][2] + with_mask["shape"][2] <= WALL_X
    assert outside.status_code == 400 and "outside the lungs" in outside.json()["detail"]


def test_the_lung_mask_api_gives_the_mask_or_says_there_is_none(cast, api, scan_with):
    from modelassist.services.quantification import lung_mask_store

    vol, lungs = pleural_nodule()
    scan = scan_with(vol)
    path = f"/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/lung-mask/"
    api.force_authenticate(cast.annotator)

    missing = api.get(path)
    lung_mask_store(scan, lungs)
    found = api.get(path, HTTP_ACCEPT="application/octet-stream")
    api.force_authenticate(cast.outsider)
    foreign = api.get(path)

    assert missing.status_code == 404 and missing.json()["code"] == "no_lung_mask"
    assert found.status_code == 200 and found["X-Label-Shape"] == ",".join(map(str, SHAPE))
    assert np.array_equal(label_codec.decode_volume(found.content, SHAPE), lungs)
    assert foreign.status_code == 404


def test_a_grow_through_the_whole_lung_is_not_cut() -> None:
    # Given a tolerance wide enough to take the lung itself: no neck, nothing to cut.
    vol, _ = nodule_on_vessel()

    lung = grow_region(vol, (10, 20, 20), tolerance=200, spacing=SPACING, leak_check=True)
    plain = grow_region(vol, (10, 20, 20), tolerance=200, spacing=SPACING)

    assert lung.voxels == plain.voxels > 100_000 and lung.leak_cut_mm is None

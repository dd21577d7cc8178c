from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import flood

from annotation.region_grow import GrowResult, RegionGrowError, grow_into_labels, grow_region

LESION_CENTER = (20, 48, 40)
LESION_RADIUS = 6


def chest(shape: tuple[int, int, int] = (40, 96, 96)) -> np.ndarray:
    """Air outside, a 40 HU body wall, a lung box of -850 HU, a -600 HU ball lesion in the lung."""
    vol = np.full(shape, -1000, dtype=np.int16)
    vol[:, 8:-8, 8:-8] = 40
    vol[2:-2, 16:-16, 16:-16] = -850
    z, y, x = np.indices(shape)
    cz, cy, cx = LESION_CENTER
    vol[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= LESION_RADIUS**2] = -600
    return vol


def whole(result: GrowResult, shape: tuple[int, ...]) -> np.ndarray:
    """The result's mask placed in a volume of `shape`."""
    out = np.zeros(shape, dtype=bool)
    z, y, x = result.offset
    d, h, w = result.mask.shape
    out[z : z + d, y : y + h, x : x + w] = result.mask.astype(bool)
    return out


def reference(vol: np.ndarray, seed, lo: float, hi: float, connectivity: int = 6) -> np.ndarray:
    """A flood of the whole volume: what the grown region must equal."""
    return flood((vol >= lo) & (vol <= hi), tuple(seed), connectivity={6: 1, 26: 3}[connectivity])


def test_a_lesion_grows_to_exactly_its_ball() -> None:
    vol = chest()

    result = grow_region(vol, LESION_CENTER, lower=-700, upper=-500)

    assert np.array_equal(whole(result, vol.shape), vol == -600)
    assert result.voxels == np.count_nonzero(vol == -600)
    assert result.mask.dtype == np.uint8 and set(np.unique(result.mask)) == {0, 1}
    assert result.message == f"grew {result.voxels:,} voxels"
    assert not result.capped
    assert result.seed_hu == -600


def test_the_mask_is_cropped_to_the_region() -> None:
    result = grow_region(chest(), LESION_CENTER, lower=-700, upper=-500)

    assert result.mask.shape == (2 * LESION_RADIUS + 1,) * 3
    assert result.offset == tuple(c - LESION_RADIUS for c in LESION_CENTER)


def test_tolerance_around_the_seed_equals_the_same_explicit_bounds() -> None:
    vol = chest()

    by_tolerance = grow_region(vol, LESION_CENTER, tolerance=100)
    by_bounds = grow_region(vol, LESION_CENTER, lower=-700, upper=-500)

    assert (by_tolerance.lower, by_tolerance.upper) == (-700, -500)
    assert by_tolerance.offset == by_bounds.offset
    assert np.array_equal(by_tolerance.mask, by_bounds.mask)


def test_a_wide_tolerance_leaks_into_the_lung() -> None:
    vol = chest()

    result = grow_region(vol, LESION_CENTER, tolerance=300)

    assert result.voxels == np.count_nonzero((vol == -850) | (vol == -600))


def test_connectivity_26_crosses_diagonal_only_contacts() -> None:
    vol = np.zeros((10, 10, 10), dtype=np.int16)
    vol[4, 4, 4] = vol[5, 5, 5] = 100  # touch by a corner only

    six = grow_region(vol, (4, 4, 4), lower=50, upper=150, connectivity=6)
    twenty_six = grow_region(vol, (4, 4, 4), lower=50, upper=150, connectivity=26)

    assert six.voxels == 1
    assert twenty_six.voxels == 2
    assert twenty_six.offset == (4, 4, 4) and twenty_six.mask.shape == (2, 2, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give both lower and upper, or a tolerance"),
        ({"lower": -700}, "give both lower and upper"),
        ({"lower": -700, "upper": -500, "tolerance": 50}, "not both"),
        ({"lower": -500, "upper": -700}, "lower -500 is above upper -700"),
        ({"tolerance": -5}, "tolerance must be a number >= 0"),
        ({"lower": -900, "upper": -700}, "the seed's HU -600 is outside [-900, -700]"),
        ({"tolerance": 50, "connectivity": 18}, "connectivity must be 6 or 26"),
        ({"tolerance": 50, "radius_mm": 0}, "radius_mm must be a positive number"),
        ({"tolerance": 50, "max_voxels": 0}, "max_voxels must be at least 1"),
        ({"tolerance": 50, "spacing": (1, 0, 1)}, "spacing must be three positive numbers"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(kwargs, message: str) -> None:
    with pytest.raises(RegionGrowError) as excinfo:
        grow_region(chest(), LESION_CENTER, **kwargs)

    assert message in str(excinfo.value)


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        ((40, 0, 0), "the seed's z 40 is outside the scan (0..39)"),
        ((0, -1, 0), "the seed's y -1"),
        ((1, 2), "three"),
    ],
)
def test_a_seed_outside_the_scan_is_refused(seed, message: str) -> None:
    with pytest.raises(RegionGrowError) as excinfo:
        grow_region(chest(), seed, tolerance=10)

    assert message in str(excinfo.value)


@pytest.mark.parametrize("connectivity", [6, 26])
def test_widening_past_the_first_cube_gives_the_whole_volume_flood(connectivity: int) -> None:
    vol = chest()
    seed = (10, 30, 30)

    result = grow_region(vol, seed, lower=-1000, upper=-500, connectivity=connectivity, roi_start=4)

    expected = reference(vol, seed, -1000, -500, connectivity)
    assert np.array_equal(whole(result, vol.shape), expected)
    assert result.voxels == np.count_nonzero(expected) > 9**3


def test_a_winding_region_that_leaves_and_reenters_the_first_cube() -> None:
    # A loop in one slice: from the seed it runs out of the first cube and comes back into
    # it at (12, 10), one voxel from the seed's row; inside the cube the two are not connected.
    vol = np.zeros((5, 60, 60), dtype=np.int16)
    vol[2, 10, 10:50] = 1
    vol[2, 10:40, 49] = 1
    vol[2, 39, 10:50] = 1
    vol[2, 12:40, 10] = 1
    vol[2, 12, 14] = 1  # in range but connected to nothing
    seed = (2, 10, 12)

    result = grow_region(vol, seed, lower=1, upper=1, roi_start=3)

    region = whole(result, vol.shape)
    assert np.array_equal(region, reference(vol, seed, 1, 1))
    assert region[2, 12, 10] and not region[2, 12, 14]


@pytest.mark.parametrize("connectivity", [6, 26])
@pytest.mark.parametrize("seed_index", range(6))
def test_random_porous_volumes_match_the_whole_volume_flood(connectivity: int, seed_index: int) -> None:
    rng = np.random.default_rng(seed_index)
    density = 0.28 if connectivity == 6 else 0.12  # just below percolation: long, branched regions
    vol = (rng.random((30, 40, 50)) < density).astype(np.int16) * 100
    candidates = np.argwhere(vol == 100)
    seed = tuple(int(v) for v in candidates[rng.integers(len(candidates))])

    result = grow_region(vol, seed, lower=50, upper=150, connectivity=connectivity, roi_start=2)

    assert np.array_equal(whole(result, vol.shape), reference(vol, seed, 50, 150, connectivity))


def is_connected(mask: np.ndarray, seed) -> bool:
    return np.array_equal(flood(mask, tuple(seed), connectivity=1), mask)


def test_the_voxel_cap_stops_the_grow() -> None:
    vol = chest()
    seed = (20, 30, 30)

    result = grow_region(vol, seed, lower=-1000, upper=-500, max_voxels=5_000, roi_start=4)

    assert result.capped
    assert result.message == "stopped at 5,000 voxels"
    assert 0 < result.voxels <= 5_000
    region = whole(result, vol.shape)
    assert region[seed] and is_connected(region, seed)
    assert not (region & ~reference(vol, seed, -1000, -500)).any()


def test_a_cap_below_the_first_cube_shrinks_the_cube() -> None:
    vol = chest()
    seed = (20, 30, 30)

    result = grow_region(vol, seed, lower=-1000, upper=-500, max_voxels=100)

    assert result.capped and 0 < result.voxels <= 100
    assert is_connected(whole(result, vol.shape), seed)


def test_a_cap_of_one_voxel_gives_the_seed() -> None:
    result = grow_region(chest(), (20, 30, 30), lower=-1000, upper=-500, max_voxels=1)

    assert result.capped and result.voxels == 1 and result.offset == (20, 30, 30)


def mm_from(seed, shape, spacing_xyz) -> np.ndarray:
    sx, sy, sz = spacing_xyz
    z, y, x = np.indices(shape)
    return np.sqrt(((z - seed[0]) * sz) ** 2 + ((y - seed[1]) * sy) ** 2 + ((x - seed[2]) * sx) ** 2)


def test_the_radius_stops_the_grow_at_a_ball_in_mm() -> None:
    vol = chest()
    seed = (20, 48, 70)
    spacing = (0.5, 0.5, 2.0)  # x, y, z mm: the ball is flat in voxels

    result = grow_region(vol, seed, lower=-1000, upper=-700, spacing=spacing, radius_mm=10)

    within = mm_from(seed, vol.shape, spacing) <= 10
    in_range = (vol >= -1000) & (vol <= -700)
    expected = flood(in_range & within, seed, connectivity=1)
    assert np.array_equal(whole(result, vol.shape), expected)
    assert result.message == "stopped at the 10 mm radius"
    assert not result.capped


def test_a_region_inside_the_radius_is_not_reported_as_stopped() -> None:
    result = grow_region(chest(), LESION_CENTER, lower=-700, upper=-500, radius_mm=LESION_RADIUS + 3)

    assert result.message == f"grew {result.voxels:,} voxels"


def test_a_region_cut_off_inside_the_ball_but_touching_its_edge_is_not_stopped() -> None:
    # The lesion's ball ends exactly at the radius; outside it the HU are out of range.
    result = grow_region(chest(), LESION_CENTER, lower=-700, upper=-500, radius_mm=LESION_RADIUS)

    assert result.voxels == np.count_nonzero(chest() == -600)
    assert result.message.startswith("grew")


def test_growing_into_labels_keeps_other_classes() -> None:
    vol = chest()
    labels = np.zeros(vol.shape, dtype=np.uint8)
    labels[LESION_CENTER] = 2  # another class already painted in the lesion
    result = grow_region(vol, LESION_CENTER, lower=-700, upper=-500)

    changed = grow_into_labels(labels, result, 1)

    assert labels[LESION_CENTER] == 2
    assert changed == result.voxels - 1
    assert np.count_nonzero(labels == 1) == result.voxels - 1


def test_growing_into_labels_can_overwrite() -> None:
    vol = chest()
    labels = np.zeros(vol.shape, dtype=np.uint8)
    labels[LESION_CENTER] = 2
    result = grow_region(vol, LESION_CENTER, lower=-700, upper=-500)

    grow_into_labels(labels, result, 1, overwrite=True)

    assert np.count_nonzero(labels == 1) == result.voxels
    assert not (labels == 2).any()

import numpy as np
import pytest
from scipy import ndimage

from annotation.dice import mask_dice
from modelassist.baseline import (
    CONSOLIDATION,
    GGO,
    LEFT_LUNG,
    RIGHT_LUNG,
    baseline_presegment,
    close_box,
    fill_holes_per_slice,
    open_box,
    segment_lesions,
    segment_lungs,
)
from tests.modelassist.synthetic import make_chest


@pytest.fixture(scope="module")
def chest():
    return make_chest(seed=0)


@pytest.fixture(scope="module")
def result(chest):
    return baseline_presegment(chest.hu, chest.spacing)


def test_it_finds_both_lungs_with_the_right_lung_on_the_image_left(chest, result):
    _, lungs = result

    assert lungs.dtype == np.uint8 and lungs.shape == chest.hu.shape
    assert mask_dice(lungs == RIGHT_LUNG, chest.lungs == RIGHT_LUNG) > 0.9
    assert mask_dice(lungs == LEFT_LUNG, chest.lungs == LEFT_LUNG) > 0.9
    right_x = np.nonzero(lungs == RIGHT_LUNG)[2].mean()
    left_x = np.nonzero(lungs == LEFT_LUNG)[2].mean()
    assert right_x < left_x


def test_it_leaves_out_the_trachea_and_the_air_outside_the_body(chest, result):
    _, lungs = result
    trachea = np.count_nonzero(chest.trachea)

    assert trachea > 100
    assert np.count_nonzero(lungs[chest.trachea]) / trachea < 0.05
    outside_air = (chest.hu < -900) & ~ndimage.binary_dilation(chest.lungs > 0, iterations=3)
    assert np.count_nonzero(lungs[outside_air & ~chest.airway]) == 0


def test_it_segments_lesions_inside_the_lungs(chest, result):
    labels, lungs = result

    assert labels.dtype == np.uint8 and labels.shape == chest.hu.shape
    assert set(np.unique(labels)) <= {0, GGO, CONSOLIDATION}
    assert mask_dice(labels > 0, chest.lesions > 0) > 0.6
    assert mask_dice(labels == GGO, chest.lesions == GGO) > 0.5
    assert mask_dice(labels == CONSOLIDATION, chest.lesions == CONSOLIDATION) > 0.5
    assert np.all(lungs[labels > 0] > 0)


def test_dense_lesion_against_the_pleura_is_inside_the_lung_mask(chest, result):
    _, lungs = result
    consolidation = chest.lesions == CONSOLIDATION

    assert np.count_nonzero(lungs[consolidation]) / np.count_nonzero(consolidation) > 0.95


def test_thin_vessels_are_mostly_not_called_lesions():
    chest = make_chest(seed=1, n_ggo=0, n_consolidation=0, n_vessels=10)

    labels, _ = baseline_presegment(chest.hu, chest.spacing)

    assert np.count_nonzero(chest.vessels) > 50
    assert np.count_nonzero(labels[chest.vessels]) / np.count_nonzero(chest.vessels) < 0.1
    assert np.count_nonzero(labels) < 0.2 * np.count_nonzero(chest.vessels)


def test_lungs_that_touch_at_the_midline_are_split():
    chest = make_chest(seed=2, lung_offset=0.25)
    assert ndimage.label(chest.lungs > 0)[1] == 1  # given: one connected air space

    lungs = segment_lungs(chest.hu, chest.spacing)

    assert mask_dice(lungs == RIGHT_LUNG, chest.lungs == RIGHT_LUNG) > 0.9
    assert mask_dice(lungs == LEFT_LUNG, chest.lungs == LEFT_LUNG) > 0.9


def test_large_slices_take_the_half_resolution_path():
    chest = make_chest((20, 256, 256), (1.4, 1.4, 8.0), seed=3)

    labels, lungs = baseline_presegment(chest.hu, chest.spacing)

    assert lungs.shape == chest.hu.shape
    assert mask_dice(lungs == RIGHT_LUNG, chest.lungs == RIGHT_LUNG) > 0.9
    assert mask_dice(lungs == LEFT_LUNG, chest.lungs == LEFT_LUNG) > 0.9
    assert mask_dice(labels > 0, chest.lesions > 0) > 0.6


def test_odd_sized_large_slices_keep_their_shape():
    chest = make_chest((12, 257, 259), (1.4, 1.4, 8.0), seed=4)

    labels, lungs = baseline_presegment(chest.hu, chest.spacing)

    assert labels.shape == lungs.shape == chest.hu.shape
    assert mask_dice(lungs > 0, chest.lungs > 0) > 0.9


def test_a_volume_without_lungs_gives_empty_masks():
    hu = np.full((6, 64, 64), -1000, dtype=np.int16)
    hu[:, 8:56, 8:56] = 40

    labels, lungs = baseline_presegment(hu, (2.0, 2.0, 5.0))

    assert not lungs.any() and not labels.any()


def test_lesions_need_a_lung_mask():
    hu = np.full((4, 16, 16), -100, dtype=np.int16)

    assert not segment_lesions(hu, np.zeros(hu.shape, np.uint8), (1.0, 1.0, 1.0)).any()


@pytest.mark.parametrize("width", [2, 3, 4])
def test_box_opening_keeps_a_block_its_size_and_removes_thinner_ones(width):
    mask = np.zeros((1, 20, 30), dtype=bool)
    mask[0, 5 : 5 + width, 3 : 3 + width] = True  # fits the box exactly
    mask[0, 5 : 5 + width - 1, 15:25] = True  # one row too thin

    opened = open_box(mask, (1, width, width))

    assert opened[0, 5 : 5 + width, 3 : 3 + width].all()
    assert not opened[0, :, 15:25].any()


def test_box_closing_fills_a_narrow_notch_but_not_the_edge():
    mask = np.zeros((1, 20, 20), dtype=bool)
    mask[0, 2:18, 2:18] = True
    mask[0, 2:10, 9] = False  # a one-pixel notch from the border

    closed = close_box(mask, (1, 3, 3))

    assert closed[0, 2:10, 9].all()
    assert not closed[0, 0:2, :].any()


def test_holes_are_filled_per_slice_only():
    mask = np.zeros((3, 9, 9), dtype=bool)
    mask[1, 2:7, 2:7] = True
    mask[1, 4, 4] = False  # a hole within slice 1
    mask[:, 0, 4] = True

    filled = fill_holes_per_slice(mask)

    assert filled[1, 4, 4]
    assert not filled[0, 4, 4] and not filled[2, 4, 4]

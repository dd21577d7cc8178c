import numpy as np
import pytest

from modelassist.dice import dice, dice_per_class, foreground_dice, mean_dice, pooled_dice


def test_dice_of_two_empty_masks_is_one():
    empty = np.zeros((2, 3, 3), dtype=np.uint8)

    assert dice(empty > 0, empty > 0) == 1.0
    assert dice_per_class(empty, empty) == {1: 1.0, 2: 1.0}
    assert mean_dice(empty, empty) == 1.0


def test_dice_per_class_foreground_and_mean():
    truth = np.zeros((1, 1, 8), dtype=np.uint8)
    truth[0, 0, :4] = 1
    truth[0, 0, 4:6] = 2
    pred = truth.copy()
    pred[0, 0, 0:2] = 2  # two ground-glass voxels called consolidation

    per_class = dice_per_class(pred, truth)

    assert per_class[1] == pytest.approx(2 * 2 / (2 + 4))
    assert per_class[2] == pytest.approx(2 * 2 / (4 + 2))
    assert mean_dice(pred, truth) == pytest.approx(2 / 3)
    assert foreground_dice(pred, truth) == 1.0


def test_pooled_dice_sums_voxel_counts_over_scans():
    small_truth = np.array([[[1, 1, 0, 0]]], dtype=np.uint8)
    small_pred = np.array([[[0, 0, 1, 1]]], dtype=np.uint8)  # misses its small lesion
    big_truth = np.ones((1, 4, 4), dtype=np.uint8)
    big_pred = big_truth.copy()  # finds its big lesion

    pooled = pooled_dice([(small_pred, small_truth), (big_pred, big_truth)])

    # Pooled: 2·16 / (18 + 18); a mean of per-scan Dice would say (0 + 1) / 2.
    assert pooled["per_class"]["1"] == pytest.approx(32 / 36)
    assert pooled["per_class"]["2"] == 1.0  # absent from both
    assert pooled["mean"] == pytest.approx((32 / 36 + 1.0) / 2)
    assert pooled["foreground"] == pytest.approx(32 / 36)


def test_pooled_dice_of_no_scans_measures_nothing():
    assert pooled_dice([]) == {"mean": None, "foreground": None, "per_class": {}}

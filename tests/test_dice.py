"""The one Dice (annotation/dice.py), against values worked out by hand."""

import ast
from pathlib import Path

import numpy as np
import pytest

from annotation.dice import (
    foreground_dice,
    mask_dice,
    mean_per_class_dice,
    per_class_dice,
    pooled_case_dice,
    pooled_class_dice,
)

ROOT = Path(__file__).resolve().parent.parent


def row(*labels: int) -> np.ndarray:
    return np.array([[labels]], dtype=np.uint8)


def test_dice_of_two_empty_masks_is_one():
    empty = np.zeros((2, 3, 3), dtype=np.uint8)

    assert mask_dice(empty > 0, empty > 0) == 1.0
    assert per_class_dice(empty, empty) == {1: 1.0, 2: 1.0}
    assert mean_per_class_dice(empty, empty) == 1.0
    assert pooled_class_dice(empty, empty) == 1.0


def test_mask_dice_is_twice_the_overlap_over_the_sizes():
    # 3 and 2 voxels, 1 shared: 2·1 / (3 + 2).
    assert mask_dice(row(1, 1, 1, 0) > 0, row(0, 0, 1, 1) > 0) == pytest.approx(2 / 5)
    assert mask_dice(row(1, 1, 0, 0) > 0, row(0, 0, 0, 0) > 0) == 0.0


def test_per_class_foreground_and_mean():
    truth = row(1, 1, 1, 1, 2, 2, 0, 0)
    pred = row(2, 2, 1, 1, 2, 2, 0, 0)  # two ground-glass voxels called consolidation

    per_class = per_class_dice(pred, truth)

    assert per_class[1] == pytest.approx(2 * 2 / (2 + 4))
    assert per_class[2] == pytest.approx(2 * 2 / (4 + 2))
    assert mean_per_class_dice(pred, truth) == pytest.approx(2 / 3)
    assert foreground_dice(pred, truth) == 1.0


def test_pooled_class_dice_counts_a_voxel_only_where_both_give_it_the_same_class():
    a = row(1, 1, 1, 1, 2, 2, 0, 0)
    b = row(2, 2, 1, 1, 2, 0, 3, 0)
    # Same non-zero class: voxels 2, 3 (class 1) and 4 (class 2) → 3; |a>0| = 6, |b>0| = 6.
    assert pooled_class_dice(a, b) == pytest.approx(2 * 3 / (6 + 6))
    # Same place, wrong class: no agreement at all.
    assert pooled_class_dice(row(1, 1), row(2, 2)) == 0.0
    assert pooled_class_dice(row(1, 0), row(0, 0)) == 0.0
    # It is the Dice of per-class voxel counts summed over every class (micro), not their mean.
    pooled = pooled_case_dice([(a, b)], classes=(1, 2, 3))["per_class"]
    assert pooled_class_dice(a, b) != pytest.approx(np.mean(list(pooled.values())))


def test_pooled_case_dice_sums_voxel_counts_over_scans():
    small_truth = row(1, 1, 0, 0)
    small_pred = row(0, 0, 1, 1)  # misses its small lesion
    big_truth = np.ones((1, 4, 4), dtype=np.uint8)
    big_pred = big_truth.copy()  # finds its big lesion

    pooled = pooled_case_dice([(small_pred, small_truth), (big_pred, big_truth)])

    # Pooled: 2·16 / (18 + 18); a mean of per-scan Dice would say (0 + 1) / 2.
    assert pooled["per_class"]["1"] == pytest.approx(32 / 36)
    assert pooled["per_class"]["2"] == 1.0  # absent from both
    assert pooled["mean"] == pytest.approx((32 / 36 + 1.0) / 2)
    assert pooled["foreground"] == pytest.approx(32 / 36)


def test_pooled_case_dice_of_no_scans_measures_nothing():
    assert pooled_case_dice([]) == {"mean": None, "foreground": None, "per_class": {}}


def _called_names(function: ast.FunctionDef) -> set[str]:
    names = set()
    for call in ast.walk(function):
        if isinstance(call, ast.Call):
            if isinstance(call.func, ast.Name):
                names.add(call.func.id)
            elif isinstance(call.func, ast.Attribute):
                names.add(call.func.attr)
    return names


def test_every_dice_outside_the_one_module_is_computed_by_it():
    # Two functions named `dice` computed different things; a function elsewhere with Dice in
    # its name (a QC figure, a bench) must call the one module, not work it out again.
    import annotation.dice as one

    public = {name for name in dir(one) if name.endswith("dice") and not name.startswith("_")}
    own_way = []
    for folder in (
        "core",
        "imaging",
        "pacs",
        "annotation",
        "qc",
        "modelassist",
        "federation",
        "demo",
        "bench",
    ):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "annotation" / "dice.py":
                continue
            calls = {
                node: _called_names(node)
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.FunctionDef)
            }
            # A function may reach the one module through a helper of its own file (a method
            # that keeps the figure in a cache): follow those calls until nothing new passes.
            passing = set(public)
            grew = True
            while grew:
                grew = False
                for node, names in calls.items():
                    if node.name not in passing and names & passing:
                        passing.add(node.name)
                        grew = True
            for node, names in calls.items():
                computes_its_own = node.name == "dice" or not names & passing
                if "dice" in node.name.lower() and computes_its_own:
                    own_way.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert not own_way, f"Dice computed outside annotation/dice.py: {own_way}"

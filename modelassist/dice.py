"""Dice of lesion masks: per class, lesion versus background, and pooled over several scans.

Labels: 0 background, 1 ground-glass opacity, 2 consolidation, 3 other opacity; the lesion
classes scored are 1 and 2. Numpy only, so measuring needs no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

LESION_CLASSES = (1, 2)  # classes scored by Dice: ground-glass and consolidation


def _dice_from_counts(intersection: int, total: int) -> float:
    # Two empty masks agree perfectly: Dice 1.0 (a scan without lesions, none predicted).
    return 1.0 if total == 0 else 2.0 * intersection / total


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    return _dice_from_counts(
        int(np.count_nonzero(pred & truth)), int(np.count_nonzero(pred) + np.count_nonzero(truth))
    )


def dice_per_class(
    pred: np.ndarray, truth: np.ndarray, classes: Sequence[int] = LESION_CLASSES
) -> dict[int, float]:
    """Dice of each class label; 1.0 for a class absent from both."""
    return {int(c): dice(pred == c, truth == c) for c in classes}


def foreground_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of lesion versus no lesion, whatever the class."""
    return dice(pred > 0, truth > 0)


def mean_dice(pred: np.ndarray, truth: np.ndarray, classes: Sequence[int] = LESION_CLASSES) -> float:
    """Mean of the per-class Dice over the lesion classes."""
    return float(np.mean(list(dice_per_class(pred, truth, classes).values())))


def pooled_dice(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], classes: Sequence[int] = LESION_CLASSES
) -> dict[str, Any]:
    """Dice per lesion class over all (prediction, truth) pairs pooled as one (sums of voxel
    counts), their mean, and the lesion-vs-background Dice. Without pairs there is nothing to
    measure: None."""
    if not pairs:
        return {"mean": None, "foreground": None, "per_class": {}}
    counts = np.zeros((len(classes) + 1, 2), dtype=np.int64)
    for pred, truth in pairs:
        for i, (p, t) in enumerate([(pred == c, truth == c) for c in classes] + [(pred > 0, truth > 0)]):
            counts[i] += (np.count_nonzero(p & t), np.count_nonzero(p) + np.count_nonzero(t))
    per_class = [_dice_from_counts(int(n), int(t)) for n, t in counts[:-1]]
    return {
        "mean": float(np.mean(per_class)),
        "foreground": _dice_from_counts(int(counts[-1, 0]), int(counts[-1, 1])),
        "per_class": {str(c): d for c, d in zip(classes, per_class, strict=True)},
    }

"""The one Dice of the code base: overlap of masks and of label volumes (numpy only).

Labels: 0 background, 1 ground-glass opacity, 2 consolidation, 3 other opacity; the lesion
classes a model is scored on are 1 and 2. It lives in the annotation app, the lowest layer that
holds label volumes, so QC (Dice between consecutive revisions) and modelassist (a model against
curated labels) measure with the same functions.

Which Dice is which:
- mask_dice: two boolean masks (a lung, a tumour, lesion vs background).
- per_class_dice / mean_per_class_dice: each class on its own, and their mean (macro).
- pooled_class_dice: two label volumes, a voxel agreeing only where both give it the same class,
  all classes pooled into one figure (micro): what QC shows between consecutive revisions.
- pooled_case_dice: per class over many (prediction, truth) cases pooled as one (sums of voxel
  counts): how a model version is scored on a test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

LESION_CLASSES = (1, 2)  # classes a model is scored on: ground-glass and consolidation


def _dice_from_counts(intersection: int, total: int) -> float:
    # Two empty masks agree perfectly: Dice 1.0 (a scan without lesions, none predicted).
    return 1.0 if total == 0 else 2.0 * intersection / total


def mask_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    return _dice_from_counts(
        int(np.count_nonzero(pred & truth)), int(np.count_nonzero(pred) + np.count_nonzero(truth))
    )


def per_class_dice(
    pred: np.ndarray, truth: np.ndarray, classes: Sequence[int] = LESION_CLASSES
) -> dict[int, float]:
    """Dice of each class label on its own; 1.0 for a class absent from both."""
    return {int(c): mask_dice(pred == c, truth == c) for c in classes}


def mean_per_class_dice(
    pred: np.ndarray, truth: np.ndarray, classes: Sequence[int] = LESION_CLASSES
) -> float:
    """Mean of the per-class Dice (each class weighs the same, however small)."""
    return float(np.mean(list(per_class_dice(pred, truth, classes).values())))


def foreground_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of lesion versus no lesion, whatever the class."""
    return mask_dice(pred > 0, truth > 0)


def pooled_class_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two label volumes over all classes pooled: 2·|same non-zero class| / (|a>0| + |b>0|).

    A voxel both call lesion but of different classes does not agree (a wrong class is a finding
    in QC). Equals the Dice of the per-class voxel counts summed over every class; 1.0 when both
    are empty.
    """
    fa, fb = a > 0, b > 0
    return _dice_from_counts(
        int(np.count_nonzero(fa & (a == b))), int(np.count_nonzero(fa)) + int(np.count_nonzero(fb))
    )


def pooled_case_dice(
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

"""Measuring a model on an export's test cases: Dice pooled over the cases, for the new model
and for the one it must beat (the active version, or the baseline when none is active)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelassist.baseline import baseline_presegment
from modelassist.lazy import network
from modelassist.models import ModelVersion
from modelassist.services import model_versions


def pooled_dice(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], classes: Sequence[int] = (1, 2)
) -> dict[str, Any]:
    """Dice per lesion class (ground-glass, consolidation) over all cases pooled (sums of voxel counts), their mean, and the
    lesion-vs-background Dice. Without cases there is nothing to measure: None."""
    if not pairs:
        return {"mean": None, "foreground": None, "per_class": {}}
    inter = np.zeros(len(classes) + 1)
    total = np.zeros(len(classes) + 1)
    for pred, truth in pairs:
        for i, (p, t) in enumerate([(pred == c, truth == c) for c in classes] + [(pred > 0, truth > 0)]):
            inter[i] += np.count_nonzero(p & t)
            total[i] += np.count_nonzero(p) + np.count_nonzero(t)
    dice = [1.0 if t == 0 else float(2 * n / t) for n, t in zip(inter, total, strict=True)]
    return {
        "mean": float(np.mean(dice[:-1])),
        "foreground": dice[-1],
        "per_class": {str(c): d for c, d in zip(classes, dice[:-1], strict=True)},
    }


def evaluate_incumbent(
    version: ModelVersion | None, test: list[tuple[np.ndarray, np.ndarray, tuple]]
) -> dict[str, Any]:
    """Dice of the active version (or the baseline) on the same test cases."""
    if version is None:
        return pooled_dice([(baseline_presegment(hu, spacing)[0], labels) for hu, labels, spacing in test])
    model = model_versions.load_version_model(version)
    return pooled_dice([(network.predict_volume(model, hu), labels) for hu, labels, _ in test])

"""Measuring a model on an export's test cases: Dice pooled over the cases, for the new model
and for the one it must beat (the active version, or the baseline when none is active)."""

from __future__ import annotations

from typing import Any

import numpy as np

from annotation.dice import pooled_case_dice
from modelassist.baseline import baseline_presegment
from modelassist.lazy import network
from modelassist.models import ModelVersion
from modelassist.services import model_versions


def evaluate_incumbent(
    version: ModelVersion | None, test: list[tuple[np.ndarray, np.ndarray, tuple]]
) -> dict[str, Any]:
    """Dice of the active version (or the baseline) on the same test cases."""
    if version is None:
        return pooled_case_dice([(baseline_presegment(hu, spacing)[0], labels) for hu, labels, spacing in test])
    model = model_versions.load_version_model(version)
    return pooled_case_dice([(network.predict_volume(model, hu), labels) for hu, labels, _ in test])

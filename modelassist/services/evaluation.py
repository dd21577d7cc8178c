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
        return pooled_case_dice(
            [(baseline_presegment(hu, spacing)[0], labels) for hu, labels, spacing in test]
        )
    model = model_versions.load_version_model(version)
    return pooled_case_dice([(network.predict_volume(model, hu), labels) for hu, labels, _ in test])


# ----------------------------------------------------------------------------- classifier


def classifier_test_figures(
    model: Any, test: list, lungs: list[np.ndarray], targets: list[int]
) -> dict[str, Any]:
    """A scan classifier's figures (modelassist.classifier.metrics) on the labelled test cases,
    each model on its own input grid."""
    from modelassist.classifier.data import stack_inputs
    from modelassist.classifier.metrics import classifier_figures
    from modelassist.classifier.network import predict_probabilities

    probabilities = predict_probabilities(model, stack_inputs(test, lungs, model.grid))
    return classifier_figures(targets, probabilities, model.classes)


def evaluate_incumbent_classifier(
    version: ModelVersion | None, test: list, lungs: list[np.ndarray], targets: list[int], classes: list[str]
) -> dict[str, Any] | None:
    """The active version's classifier on the same test cases; None when there is none to beat
    (the baseline, a version without one, or one trained on other classes)."""
    if version is None or not version.classifier_file_path:
        return None
    model = model_versions.load_version_classifier(version)
    if model is None or list(model.classes) != list(classes):
        return None
    return {
        "label": version.label,
        "model_version_id": version.pk,
        **classifier_test_figures(model, test, lungs, targets),
    }


def lesion_volume_agreement(predictions: list[np.ndarray], test: list) -> dict[str, Any]:
    """Pearson's r between the segmenter's and the curated lesion volume per test case (Topff et al.)."""
    from modelassist.classifier.metrics import pearson_r

    def ml(labels: np.ndarray, spacing: tuple) -> float:
        return float(np.count_nonzero(labels)) * float(np.prod([float(s) for s in spacing])) / 1000.0

    predicted = [ml(p, spacing) for p, (_, _, spacing) in zip(predictions, test, strict=True)]
    curated = [ml(labels, spacing) for _, labels, spacing in test]
    return {"pearson_r": pearson_r(predicted, curated), "predicted_ml": predicted, "curated_ml": curated}

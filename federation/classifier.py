"""The scan-level classifier's part of a federated run: it trains beside the segmenter at each
site, on the same export and split as retraining trains it (modelassist.classifier), and its
parameters travel in the same update, each name prefixed with CLASSIFIER_PREFIX, so one FedAvg
(or FedProx, FedAvgM, DP clipping) averages both models and the audit trail hashes both.

A run trains the classifier when its label schema has a scan-level label of two choices or more
(the diagnosis) and it does not use secure aggregation: SecAgg+ quantises every parameter within
a clipping range of ±8, which the classifier's batch-norm statistics leave; such a run trains the
segmenter only and says so on its rounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelassist.lazy import classifier_net
from modelassist.models import DatasetExport, Split
from modelassist.services import export as exports

CLASSIFIER_PREFIX = "classifier."
# Local epochs of the classifier per round when the run's train_params name none: six rounds
# give about retraining's 50 epochs (its default), which the classifier needs on phantoms.
DEFAULT_LOCAL_EPOCHS = 8


@dataclass(frozen=True)
class ClassifierSpec:
    architecture: str
    label_key: str
    classes: tuple[str, ...]


@dataclass(frozen=True)
class ClassifierData:
    """A site's labelled cases per split: the classifier's inputs, lung masks and targets."""

    cases: dict[str, list[Any]]  # (hu, labels, spacing) of the cases with a curated label
    lungs: dict[str, list[np.ndarray]]
    targets: dict[str, list[int]]
    inputs: dict[str, Any]  # (n, 1, z, y, x) tensors on the classifier's grid


def classifier_spec(run: Any) -> ClassifierSpec | None:
    """What classifier the run trains (None: the segmenter only)."""
    from modelassist.classifier.data import diagnosis_label
    from modelassist.services.training import classifier_architecture_for

    if run.secagg_enabled:
        return None
    label = diagnosis_label(run.label_schema or {})
    if label is None:
        return None
    key, classes = label
    return ClassifierSpec(classifier_architecture_for(run.architecture), key, tuple(classes))


def skipped_reason(run: Any) -> str:
    if run.secagg_enabled:
        return "not trained: secure aggregation (SecAgg+) runs train the segmenter only"
    return "not trained: the run's label schema has no scan-level label to learn"


def split_state(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(segmenter state, classifier state) of one travelling update; the latter may be empty."""
    segmenter = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIX)}
    classifier = {k[len(CLASSIFIER_PREFIX) :]: v for k, v in state.items() if k.startswith(CLASSIFIER_PREFIX)}
    return segmenter, classifier


def joined_state(segmenter: Mapping[str, Any], classifier: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**segmenter, **{CLASSIFIER_PREFIX + k: v for k, v in (classifier or {}).items()}}


def initial_classifier(spec: ClassifierSpec, seed: int = 0) -> Any:
    """The round-0 global classifier: the architecture's fresh weights, the same at every seed."""
    import torch

    torch.manual_seed(seed)
    return classifier_net.build_classifier(list(spec.classes), spec.architecture)


def classifier_from_state(spec: ClassifierSpec, state: Mapping[str, Any]) -> Any:
    import torch

    model = classifier_net.build_classifier(list(spec.classes), spec.architecture)
    # Averaged counters (batch-norm's num_batches_tracked) arrive as floats; the model keeps ints.
    model.load_state_dict(
        {k: torch.as_tensor(np.asarray(v)).to(model.state_dict()[k].dtype) for k, v in state.items()}
    )
    model.eval()
    return model


def load_data(
    export: DatasetExport, cases: Mapping[str, Sequence[Any]], spec: ClassifierSpec
) -> ClassifierData:
    """The export's cases (federation.training.load_cases, same order) with their curated labels."""
    from modelassist.classifier import data

    manifest = exports.export_manifest(export)["cases"]
    chosen: dict[str, list[Any]] = {}
    targets: dict[str, list[int]] = {}
    for split in Split.values:
        entries = [c for c in manifest if c["split"] == split]
        pairs = [
            (case, t)
            for case, t in zip(
                cases[split], data.case_targets(entries, spec.label_key, spec.classes), strict=True
            )
            if t is not None
        ]
        chosen[split] = [case for case, _ in pairs]
        targets[split] = [t for _, t in pairs]
    lungs = {s: data.lung_masks(chosen[s]) for s in Split.values}
    grid = classifier_net.ARCHITECTURES[spec.architecture]["grid"]
    inputs = {s: data.stack_inputs(chosen[s], lungs[s], grid) for s in Split.values}
    return ClassifierData(chosen, lungs, targets, inputs)


def train_local(
    data: ClassifierData,
    spec: ClassifierSpec,
    *,
    params: Mapping[str, Any],
    initial_state: Mapping[str, Any] | None,
    round_number: int,
) -> tuple[Any, list[dict[str, Any]]]:
    """A round's local training of the classifier from the global one (retraining's recipe:
    the last epoch's weights, as modelassist.services.training keeps them)."""
    from modelassist.classifier.train import train_classifier

    epochs = int(params.get("classifier_epochs", DEFAULT_LOCAL_EPOCHS))
    start = classifier_from_state(spec, initial_state) if initial_state else None
    if not data.targets[Split.TRAIN]:  # no curated diagnosis to learn from: send the global one back
        return start if start is not None else initial_classifier(spec, int(params.get("seed", 0))), []
    return train_classifier(
        data.inputs[Split.TRAIN],
        data.targets[Split.TRAIN],
        data.inputs[Split.VALIDATION],
        data.targets[Split.VALIDATION],
        list(spec.classes),
        epochs=epochs,
        seed=int(params.get("seed", 0)) + round_number,
        architecture=spec.architecture,
        patience=epochs,
        keep_best=False,
        initial_state=start.state_dict() if start is not None else None,
    )


def test_figures(
    spec: ClassifierSpec, state: Mapping[str, Any], data: ClassifierData, incumbent: Any
) -> tuple[Any, dict[str, Any]]:
    """(model, figures) of the round's global classifier on the site's test split, beside the
    site's active classifier on the same cases, as retraining's metrics["classifier"]."""
    from modelassist.services import evaluation

    model = classifier_from_state(spec, state)
    test, lungs, targets = data.cases[Split.TEST], data.lungs[Split.TEST], data.targets[Split.TEST]
    return model, {
        "trained": True,
        "architecture": spec.architecture,
        "label_key": spec.label_key,
        "classes": list(spec.classes),
        "train_cases": len(data.targets[Split.TRAIN]),
        "validation_cases": len(data.targets[Split.VALIDATION]),
        "test_cases": len(targets),
        "candidate": evaluation.classifier_test_figures(model, test, lungs, targets),
        "incumbent": evaluation.evaluate_incumbent_classifier(
            incumbent, test, lungs, targets, list(spec.classes)
        ),
    }

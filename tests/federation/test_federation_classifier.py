"""The scan classifier's part of a federated update (federation.classifier): one update holds
both models under distinct names, a run trains the classifier only when it can, and a round's
local training starts from the global classifier."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.label_schema import COVID19_SCHEMA
from federation import classifier as scan_classifier
from federation.training import initial_model


def _run(**kw):
    return SimpleNamespace(
        **{"secagg_enabled": False, "label_schema": COVID19_SCHEMA, "architecture": "unet2d-tiny", **kw}
    )


def test_a_run_trains_the_classifier_of_its_diagnosis_label_unless_secagg_or_no_scan_label():
    spec = scan_classifier.classifier_spec(_run())
    assert spec is not None and spec.architecture == "topff3d-tiny" and spec.label_key == "diagnosis"
    assert spec.classes == tuple(COVID19_SCHEMA["scan_labels"][0]["choices"])
    assert scan_classifier.classifier_spec(_run(secagg_enabled=True)) is None
    assert "secure aggregation" in scan_classifier.skipped_reason(_run(secagg_enabled=True))
    lesions_only = {"classes": COVID19_SCHEMA["classes"]}
    assert scan_classifier.classifier_spec(_run(label_schema=lesions_only)) is None
    assert "no scan-level label" in scan_classifier.skipped_reason(_run(label_schema=lesions_only))


def test_one_update_holds_both_models_and_splits_back_exactly():
    spec = scan_classifier.classifier_spec(_run())
    segmenter = initial_model("unet2d-tiny").state_dict()
    classifier = scan_classifier.initial_classifier(spec).state_dict()
    joined = scan_classifier.joined_state(segmenter, classifier)
    assert len(joined) == len(segmenter) + len(classifier)
    back_segmenter, back_classifier = scan_classifier.split_state(joined)
    assert back_segmenter.keys() == segmenter.keys() and back_classifier.keys() == classifier.keys()
    assert all(torch.equal(back_classifier[k], classifier[k]) for k in classifier)
    # A segmenter-only update (a SecAgg+ run) splits into no classifier
    assert scan_classifier.split_state(segmenter)[1] == {}


def test_an_averaged_update_loads_with_its_counters_cast_back():
    """FedAvg turns batch-norm's integer num_batches_tracked into floats; the model keeps ints."""
    spec = scan_classifier.classifier_spec(_run())
    state = {
        k: v.double().numpy() * 1.0 for k, v in scan_classifier.initial_classifier(spec).state_dict().items()
    }
    counters = [k for k in state if k.endswith("num_batches_tracked")]
    assert counters
    state[counters[0]] = np.array(7.4)
    model = scan_classifier.classifier_from_state(spec, state)
    assert model.state_dict()[counters[0]].dtype == torch.int64 and int(model.state_dict()[counters[0]]) == 7


def _data(spec, targets_by_split):
    grid = (16, 32, 32)
    rng = np.random.default_rng(0)
    inputs = {
        s: torch.as_tensor(rng.random((len(t), 1, *grid)), dtype=torch.float32)
        for s, t in targets_by_split.items()
    }
    return scan_classifier.ClassifierData(
        cases={s: [None] * len(t) for s, t in targets_by_split.items()},
        lungs={s: [] for s in targets_by_split},
        targets=targets_by_split,
        inputs=inputs,
    )


def test_local_training_starts_from_the_global_classifier_and_moves_it():
    spec = scan_classifier.classifier_spec(_run())
    data = _data(spec, {"train": [0, 1, 0, 1], "validation": [0, 1], "test": []})
    start = scan_classifier.initial_classifier(spec, seed=3).state_dict()
    params = {"classifier_epochs": 2, "seed": 0}
    model, history = scan_classifier.train_local(
        data, spec, params=params, initial_state=start, round_number=1
    )
    assert len(history) == 2
    moved = [
        k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, start[k])
    ]
    assert moved  # it trained
    # The same round from another start ends elsewhere: the start is the global model, not fresh weights
    other = scan_classifier.initial_classifier(spec, seed=4).state_dict()
    model2, _ = scan_classifier.train_local(data, spec, params=params, initial_state=other, round_number=1)
    key = next(k for k in moved if "weight" in k)
    assert not torch.allclose(model.state_dict()[key], model2.state_dict()[key])


def test_a_site_without_curated_diagnoses_sends_the_global_classifier_back_unchanged():
    spec = scan_classifier.classifier_spec(_run())
    data = _data(spec, {"train": [], "validation": [], "test": []})
    start = scan_classifier.initial_classifier(spec, seed=3).state_dict()
    model, history = scan_classifier.train_local(
        data, spec, params={"classifier_epochs": 2}, initial_state=start, round_number=1
    )
    assert history == [] and all(torch.equal(model.state_dict()[k], start[k]) for k in start)


def test_fedavgm_momentum_starts_in_round_two_so_round_ones_jump_from_random_weights_is_not_repeated():
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server.strategy import FedAvgM

    from federation.flower.momentum import forget_first_round

    def fit(value: float) -> tuple:
        res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([np.array([value])]), 10, {})
        return (None, res)

    def two_rounds(forget: bool) -> float:
        strategy = FedAvgM(server_momentum=0.9, initial_parameters=ndarrays_to_parameters([np.array([0.0])]))
        strategy.aggregate_fit(1, [fit(10.0)], [])  # random weights 0 -> first average 10
        if forget:
            forget_first_round(strategy)
        parameters, _ = strategy.aggregate_fit(2, [fit(11.0)], [])  # the sites moved on to 11
        return float(parameters_to_ndarrays(parameters)[0][0])

    assert two_rounds(forget=False) == pytest.approx(11.0 + 0.9 * 10.0)  # Flower's: round 1's jump again
    assert two_rounds(forget=True) == pytest.approx(11.0)

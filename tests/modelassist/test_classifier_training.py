"""The scan-level classifier (issue #14 §2): Topff's 3D CNN trained with the segmenter on the same
export and split, its figures stored with the model version, promotion covering both models,
and its probabilities on the report but never in front of the scan's annotator.

Phantom diagnoses here follow the phantoms' lesions (COVID-19 where a lesion was drawn, "no
imaging signs" otherwise, as seed_demo labels them): the figures test the pipeline, not
clinical accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.modelassist.curated import approve, import_scans, label_volume

TINY = {"epochs": 2, "slices_per_case": 4, "batch_size": 4, "patience": 2, "max_minutes": 2}
COVID, NONE = "COVID-19", "no imaging signs of infection"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CURATECT_MIN_TEST_CASES = 1  # tiny campaigns; test_patient_split covers the default


@pytest.fixture
def approved(cast, tmp_path):
    """Four institutions' scans approved, each with both diagnoses, so every split has two."""
    cases, labels = [], {}
    for slug, n, seed in [("alpha", 2, 0), ("bravo", 2, 10), ("charlie", 2, 20), ("delta", 2, 30)]:
        for i, (scan, truth) in enumerate(import_scans(cast, tmp_path, slug, n, first_seed=seed)):
            volume = label_volume(truth, scan.shape)
            if i % 2:
                volume[:] = 0  # a scan without lesions: "no imaging signs of infection"
            cases.append((scan, volume))
            labels[scan.pk] = {"diagnosis": COVID if volume.any() else NONE}
    approve(cast, cases, scan_labels=labels)
    return cases


def _run(cast, export=None):
    from modelassist.services import training

    run = training.training_request(
        actor=cast.manager, campaign=cast.campaign, export=export, architecture="unet2d-tiny", params=TINY
    )
    return training.training_run_execute(run.pk)


def test_topff_network_trains_seeded_and_round_trips(tmp_path):
    from modelassist.classifier.network import (
        build_classifier,
        load_classifier,
        predict_probabilities,
        save_classifier,
    )
    from modelassist.classifier.train import train_classifier

    classes = [COVID, "other pulmonary infection", NONE]
    model = build_classifier(classes, "topff3d-tiny")
    convs = [m.out_channels for m in model.features if isinstance(m, torch.nn.Conv3d)]
    assert convs == [16, 16, 32, 64] and model.head[0].out_features == 128 and model.head[2].p == 0.3
    x = torch.rand((6, 1, *model.grid), generator=torch.Generator().manual_seed(1))
    y = [0, 1, 2, 0, 1, 2]

    first, history = train_classifier(
        x, y, x[:3], y[:3], classes, epochs=2, architecture="topff3d-tiny", seed=3
    )
    second, again = train_classifier(
        x, y, x[:3], y[:3], classes, epochs=2, architecture="topff3d-tiny", seed=3
    )
    probabilities = predict_probabilities(first, x)
    assert [h["epoch"] for h in history] == [1, 2] and history[0]["val_loss"] is not None
    assert [h["loss"] for h in history] == [h["loss"] for h in again]  # seeded: the same run twice
    assert np.allclose(probabilities, predict_probabilities(second, x))
    assert probabilities.shape == (6, 3) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)

    save_classifier(first, tmp_path / "c.pt", {"note": "test"})
    loaded, meta = load_classifier(tmp_path / "c.pt")
    assert loaded.classes == classes and meta == {"note": "test"}
    assert np.allclose(predict_probabilities(loaded, x), probabilities, atol=1e-6)


def test_intensity_augmentation_changes_only_lung_voxels_and_stays_in_range():
    from modelassist.classifier.train import CONTRAST, SHIFT, augment_intensity

    x = torch.zeros((3, 1, 4, 8, 8))
    x[:, :, 1:3, 2:6, 2:6] = torch.linspace(0.05, 0.95, 32).view(2, 4, 4)  # the lungs
    first = augment_intensity(x, np.random.default_rng(5))
    again = augment_intensity(x, np.random.default_rng(5))
    lungs = x > 0

    assert torch.equal(first, again)  # seeded
    assert torch.equal(first[~lungs], x[~lungs])  # outside the lungs stays at the window's bottom
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    assert not torch.equal(first[lungs], x[lungs])
    # Each sample gets its own contrast and shift: the lung means move apart, within their limits.
    means = [float(first[i][lungs[i]].mean()) for i in range(3)]
    base = float(x[0][lungs[0]].mean())
    assert len({round(m, 4) for m in means}) == 3
    assert all(abs(m - base) <= CONTRAST * base + SHIFT + 0.02 for m in means)


def test_the_classifier_has_its_own_epochs_unless_the_caller_sized_only_the_segmenter():
    from modelassist.services.training import DEFAULT_PARAMS, classifier_params, clean_params

    own = clean_params({})
    assert classifier_params(own) == {
        "epochs": DEFAULT_PARAMS["classifier_epochs"],
        "patience": DEFAULT_PARAMS["classifier_patience"],
        "max_minutes": DEFAULT_PARAMS["classifier_max_minutes"],
    }
    assert DEFAULT_PARAMS["classifier_epochs"] > DEFAULT_PARAMS["epochs"]
    sized = clean_params({"epochs": 3, "patience": 2, "max_minutes": 1})
    assert classifier_params(sized) == {"epochs": 3, "patience": 2, "max_minutes": 1.0}
    both = clean_params({"epochs": 3, "classifier_epochs": 7})
    assert (both["epochs"], classifier_params(both)["epochs"]) == (3, 7)
    # A run queued before the classifier had numbers of its own trains it with the segmenter's.
    old = {k: v for k, v in DEFAULT_PARAMS.items() if not k.startswith("classifier_")}
    assert classifier_params(old) == {k: DEFAULT_PARAMS[k] for k in ("epochs", "patience", "max_minutes")}


def test_a_run_trains_the_classifier_on_the_same_split_and_stores_it_with_the_version(cast, approved):
    from modelassist.selectors import media_path
    from modelassist.services.model_versions import file_sha256

    run = _run(cast)

    assert run.status == "done", run.error
    clf = run.metrics["classifier"]
    assert clf["trained"] is True and clf["classes"][0] == COVID
    assert run.params["classifier_epochs"] == TINY["epochs"] >= len(clf["history"])
    assert (clf["train_cases"], clf["test_cases"]) == (run.metrics["train_cases"], run.metrics["test_cases"])
    figures = clf["candidate"]
    assert figures["auc_micro"] is not None and 0.0 <= figures["auc_micro"] <= 1.0
    assert set(figures["vs_rest"]) >= {"sensitivity", "specificity", "ppv", "npv"}
    assert np.asarray(figures["confusion_matrix"]).sum() == clf["test_cases"]
    assert clf["incumbent"] is None  # the baseline has no classifier
    assert "pearson_r" in run.metrics["lesion_volume"] and run.metrics["candidate"]["per_class"]
    version = run.model_version
    assert version.classifier_architecture == "topff3d-tiny"
    assert version.classifier_sha256 == file_sha256(media_path(version.classifier_file_path))
    assert version.classifier_file_path != version.file_path
    assert version.metrics["classifier"]["candidate"] == figures
    # Deciding with a classifier names the figure that decided.
    assert "micro-AUC" in run.decision or "falls below" in run.decision


def test_promotion_needs_dice_not_to_fall_and_a_better_classifier(cast, approved, monkeypatch):
    from modelassist.models import ModelVersion
    from modelassist.services import evaluation

    def segmenter_at(mean):
        monkeypatch.setattr(
            evaluation, "evaluate_incumbent", lambda v, t: {"mean": mean, "foreground": mean, "per_class": {}}
        )

    segmenter_at(2.0)  # the segmenter would fall: not promoted, whatever the classifier does
    first = _run(cast)
    assert first.promoted is False and "falls below the baseline" in first.decision
    assert "(2.000)" in first.decision

    segmenter_at(-1.0)  # no active classifier: the new one decides, Dice does not fall
    second = _run(cast, export=first.export)
    assert second.promoted is True
    assert second.decision.startswith("promoted: the baseline") and "has no classifier" in second.decision
    assert ModelVersion.objects.get(is_active=True) == second.model_version

    # Now an active classifier exists: the next run is compared with it on the same test cases.
    third = _run(cast, export=first.export)
    active_auc = third.metrics["classifier"]["incumbent"]["auc_micro"]
    new_auc = third.metrics["classifier"]["candidate"]["auc_micro"]
    assert third.metrics["classifier"]["incumbent"]["model_version_id"] == second.model_version.pk
    if new_auc > active_auc:
        assert third.promoted is True and "beats" in third.decision
    else:
        assert third.promoted is False and "classifier micro-AUC" in third.decision
        assert "does not beat" in third.decision and f"({active_auc:.3f})" in third.decision

    monkeypatch.setattr(
        evaluation,
        "evaluate_incumbent_classifier",
        lambda *a: {"label": "model-version X", "model_version_id": 0, "auc_micro": 1.5},
    )
    fourth = _run(cast, export=first.export)
    assert fourth.promoted is False
    assert "does not beat model-version X (1.500)" in fourth.decision and "does not fall" in fourth.decision


def test_one_diagnosis_only_trains_no_classifier_and_says_why(cast, tmp_path):
    cases = [(s, label_volume(t, s.shape)) for s, t in import_scans(cast, tmp_path, "alpha", 3, first_seed=0)]
    cases += [
        (s, label_volume(t, s.shape)) for s, t in import_scans(cast, tmp_path, "bravo", 1, first_seed=9)
    ]
    cases += [
        (s, label_volume(t, s.shape)) for s, t in import_scans(cast, tmp_path, "charlie", 1, first_seed=7)
    ]
    approve(cast, cases)  # every scan COVID-19

    run = _run(cast)

    assert run.status == "done", run.error
    assert run.metrics["classifier"]["trained"] is False
    assert "fewer than two classes" in run.metrics["classifier"]["reason"]
    assert run.model_version.classifier_file_path == ""
    assert "mean lesion Dice" in run.decision  # the segmenter's rule alone


def test_the_report_shows_probabilities_but_never_to_the_scans_annotator(
    cast, approved, api, monkeypatch, tmp_path
):
    from core.services.batches import batch_build
    from modelassist.services import evaluation

    monkeypatch.setattr(
        evaluation, "evaluate_incumbent", lambda v, t: {"mean": -1.0, "foreground": -1.0, "per_class": {}}
    )
    run = _run(cast)
    assert run.promoted is True, run.decision
    scan = approved[0][0]
    url = f"/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/report/"

    api.force_authenticate(cast.manager)
    shown = api.get(url).json()["classifier"]
    assert shown["shown"] is True and shown["model_version"] == run.model_version.label
    assert set(shown["probabilities"]) == set(run.metrics["classifier"]["classes"])
    assert sum(shown["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)

    # A new scan in an annotator's open batch: no suggestion before they choose.
    new_scan, _ = import_scans(cast, tmp_path / "new", "alpha", 1, first_seed=50)[0]
    batch_build(actor=cast.manager, campaign=cast.campaign, annotator=cast.annotator, scan_ids=[new_scan.pk])
    api.force_authenticate(cast.annotator)
    pages = [
        api.get("/api/worklist/").content,
        api.get(f"/api/campaigns/{cast.campaign.pk}/scans/{new_scan.pk}/annotation/").content,
    ]
    for body in pages:
        assert b"probabilities" not in body and run.model_version.label.encode() not in body
    labels = np.zeros(new_scan.shape, dtype=np.uint8)
    labels[0, 0, 0] = 1
    from annotation.services import revision_save

    revision_save(
        actor=cast.annotator,
        campaign=cast.campaign,
        scan=new_scan,
        parent_id=None,
        full=labels,
        scan_labels={},
        time_spent_s=5,
    )
    withheld = api.get(f"/api/campaigns/{cast.campaign.pk}/scans/{new_scan.pk}/report/").json()["classifier"]
    assert withheld == {"shown": False, "reason": withheld["reason"]} and "withheld" in withheld["reason"]

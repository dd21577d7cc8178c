"""The retraining job: train on an export, test, register, promote only on a strict improvement;
starting it by hand, by the approval counter and by the schedule."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from tests.modelassist.curated import approve, eager_celery, import_scans, label_volume

TINY = {"epochs": 2, "slices_per_case": 4, "batch_size": 4, "patience": 2, "max_minutes": 2}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # These tiny campaigns have one or two test cases; tests/modelassist/test_patient_split.py
    # covers the default of five.
    settings.CURATECT_MIN_TEST_CASES = 1


@pytest.fixture
def eager():
    with eager_celery() as app:
        yield app


@pytest.fixture
def approved(cast, tmp_path):
    """Four institutions' scans, approved: every split has a case."""
    cases = []
    for slug, n, seed in [("alpha", 3, 0), ("bravo", 1, 10), ("charlie", 1, 20), ("delta", 1, 30)]:
        cases += [
            (s, label_volume(t, s.shape)) for s, t in import_scans(cast, tmp_path, slug, n, first_seed=seed)
        ]
    approve(cast, cases)
    return cases


@pytest.fixture
def sent(monkeypatch):
    """Training runs queued (on commit) are recorded here instead of being run."""
    from modelassist.services import training

    queued: list[int] = []
    monkeypatch.setattr(training, "_send", queued.append)
    return queued


def test_a_run_trains_tests_registers_and_states_its_promotion(
    cast, approved, api, eager, django_capture_on_commit_callbacks
):
    from modelassist.models import ModelVersion
    from modelassist.selectors import media_path
    from modelassist.services.model_versions import file_sha256

    api.force_authenticate(cast.manager)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"/api/campaigns/{cast.campaign.pk}/training-runs/",
            {"architecture": "unet2d-tiny", "params": TINY},
            format="json",
        )
    assert response.status_code == 202, response.content
    run = api.get(f"/api/training-runs/{response.json()['id']}/").json()

    assert run["status"] == "done", run["error"]
    assert run["export"]["version"] == 1 and run["progress"] == 1.0
    assert [h["epoch"] for h in run["history"]] == list(range(1, len(run["history"]) + 1))
    assert all(h["loss"] is not None and "val_dice" in h for h in run["history"])
    metrics = run["metrics"]
    assert metrics["test_cases"] >= 1 and metrics["train_cases"] >= 1
    assert metrics["incumbent"]["label"] == "baseline" and metrics["candidate"]["mean"] is not None
    version = ModelVersion.objects.get(pk=run["model_version"]["id"])
    assert version.trained_on.version == 1 and version.sha256 == file_sha256(media_path(version.file_path))
    assert version.metrics["history"] == run["history"]
    beats = metrics["candidate"]["mean"] > metrics["incumbent"]["mean"]
    assert run["promoted"] is beats and version.is_active is beats
    assert (
        run["decision"].startswith("promoted" if beats else "not promoted") and "export v1" in run["decision"]
    )


def test_promotion_needs_a_strict_improvement_on_the_same_test_cases(cast, approved, monkeypatch, sent):
    from modelassist.models import ModelVersion
    from modelassist.services import evaluation, training

    def incumbent_scores(mean):
        return lambda version, test: {"mean": mean, "foreground": mean, "per_class": {}}

    monkeypatch.setattr(evaluation, "evaluate_incumbent", incumbent_scores(1.0))  # unbeatable
    first = training.training_request(
        actor=cast.manager, campaign=cast.campaign, architecture="unet2d-tiny", params=TINY
    )
    first = training.training_run_execute(first.pk)
    assert first.status == "done" and first.promoted is False
    assert "does not beat the baseline" in first.decision and "(1.000)" in first.decision
    assert not ModelVersion.objects.filter(is_active=True).exists()

    monkeypatch.setattr(evaluation, "evaluate_incumbent", incumbent_scores(-1.0))  # anything beats it
    second = training.training_request(
        actor=cast.manager,
        campaign=cast.campaign,
        export=first.export,
        architecture="unet2d-tiny",
        params=TINY,
    )
    second = training.training_run_execute(second.pk)
    assert second.promoted is True and second.decision.startswith("promoted")
    assert ModelVersion.objects.get(is_active=True) == second.model_version
    assert second.export == first.export  # trained and tested on the same export

    # Running a finished run again changes nothing.
    assert training.training_run_execute(second.pk).model_version == second.model_version
    assert ModelVersion.objects.count() == 2


def test_a_failing_run_is_recorded_with_its_reason(cast, approved, monkeypatch, sent):
    from modelassist import network
    from modelassist.services import training

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(network, "train_model", broken)
    run = training.training_request(actor=cast.manager, campaign=cast.campaign, params=TINY)
    run = training.training_run_execute(run.pk)

    assert run.status == "failed" and "CUDA out of memory" in run.error and run.model_version is None


def test_retraining_starts_when_enough_scans_were_approved(
    cast, tmp_path, sent, eager, django_capture_on_commit_callbacks
):
    from modelassist.models import TrainingRun
    from modelassist.services import training

    cast.campaign.retrain_after_approved = 2
    cast.campaign.save()
    scans = [(s, label_volume(t, s.shape)) for s, t in import_scans(cast, tmp_path, "alpha", 3, first_seed=0)]

    with django_capture_on_commit_callbacks(execute=True):  # QC sends retrain_if_due by name on approval
        approve(cast, scans[:1])
    assert not TrainingRun.objects.exists()  # 1 of 2

    with django_capture_on_commit_callbacks(execute=True):
        approve(cast, scans[1:])
    (run,) = TrainingRun.objects.all()
    assert run.trigger == "approved" and run.curated_scans == 3 and sent == [run.pk]
    assert training.retrain_if_due(cast.campaign.pk) is None  # one run at a time

    TrainingRun.objects.filter(pk=run.pk).update(status="done")
    assert training.retrain_if_due(cast.campaign.pk) is None  # nothing new since that run


def test_the_schedule_retrains_only_campaigns_with_new_curated_scans(cast, tmp_path, sent):
    from django_celery_beat.models import PeriodicTask

    from modelassist.models import TrainingRun
    from modelassist.services import training

    task = PeriodicTask.objects.get(task="modelassist.tasks.retrain_scheduled")
    assert task.enabled and task.queue == "train" and task.interval.every == 3
    assert training.retrain_scheduled() == []  # nothing curated yet

    approve(
        cast,
        [(s, label_volume(t, s.shape)) for s, t in import_scans(cast, tmp_path, "alpha", 1, first_seed=0)],
    )
    (started,) = training.retrain_scheduled()
    assert TrainingRun.objects.get(pk=started).trigger == "schedule"
    TrainingRun.objects.filter(pk=started).update(status="done")
    assert training.retrain_scheduled() == []


def test_only_data_managers_train_and_parameters_are_checked(cast, approved, api, sent):
    url = f"/api/campaigns/{cast.campaign.pk}/training-runs/"
    api.force_authenticate(cast.manager)
    bad = api.post(url, {"params": {"epochs": 0}}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "bad_params"
    unknown = api.post(url, {"architecture": "resnet-9000"}, format="json")
    assert unknown.status_code == 400 and unknown.json()["code"] == "bad_architecture"
    for crop in (-1, 5000):
        refused = api.post(url, {"params": {"crop": crop}}, format="json")
        assert refused.status_code == 400 and refused.json()["code"] == "bad_params"
        assert refused.json()["detail"] == "crop must be a number from 0 to 1024"
    default = api.post(url, {}, format="json")
    assert default.status_code == 202 and default.json()["params"]["crop"] == 128
    whole_slices = api.post(url, {"params": {"crop": 0}}, format="json")  # 0: whole slices
    assert whole_slices.status_code == 202 and whole_slices.json()["params"]["crop"] == 0
    assert len(api.get(url).json()) == 2
    api.force_authenticate(cast.annotator)
    assert api.post(url, {}, format="json").status_code == 403
    api.force_authenticate(cast.outsider)
    assert api.post(url, {}, format="json").status_code == 404


def test_management_command_trains_on_an_export(cast, approved, sent):
    from django.core.management import call_command

    from tests.modelassist.curated import run_export

    export = run_export(cast)
    out = io.StringIO()
    call_command(
        "train_model",
        campaign="covid19",
        export=export.version,
        epochs=1,
        architecture="unet2d-tiny",
        stdout=out,
        stderr=io.StringIO(),
    )

    result = json.loads(out.getvalue())
    assert result["model_version"] and isinstance(result["promoted"], bool) and result["decision"]
    assert np.isfinite(result["test"]["mean"])

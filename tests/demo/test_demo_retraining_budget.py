"""One "Start retraining" click on the demo ends within about 5 minutes on 2 cores (#14 §1): a
run whose caller leaves epochs, samples and minutes empty is sized to the campaign's curated
cohort (modelassist/services/training_budget.py); a caller who sizes it keeps their numbers.
The wall time of a real click is measured by hand (see the commit); here the sizing is checked
through the API the models page calls, on the demo's own cohort (36 phantoms, 128×128×40)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

DEMO = {"scans": 2, "slices": 8, "size": 32, "curated": 36, "curated_slices": 40, "curated_size": 128}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def demo(db, django_capture_on_commit_callbacks):
    from core.models import Campaign, User

    call_command("seed_demo", stdout=io.StringIO(), no_batch=True, **DEMO)
    return Campaign.objects.get(slug="covid19"), User.objects.get(username="manager")


def click(api, campaign, manager, monkeypatch, **body):
    from modelassist.services import training

    monkeypatch.setattr(training, "_send", lambda run_id: None)  # the worker is not under test
    api.force_authenticate(manager)
    response = api.post(f"/api/campaigns/{campaign.pk}/training-runs/", body, format="json")
    assert response.status_code == 202, response.content
    return response.json()["params"]


def estimated_minutes(params: dict, cohort: dict) -> float:
    from modelassist.services import training_budget as b

    train, val = round(b.TRAIN_SHARE * cohort["scans"]), round(b.VALIDATION_SHARE * cohort["scans"])
    side = min(params["crop"] or cohort["rows"], cohort["rows"])
    per_epoch = (
        b.TRAIN_SECONDS_PER_PIXEL * side**2 * params["slices_per_case"] * train
        + b.PREDICT_SECONDS_PER_PIXEL * val * cohort["slices"] * cohort["rows"] * cohort["columns"]
    )
    return params["epochs"] * per_epoch / 60


def test_a_demo_click_with_empty_fields_is_sized_to_finish_in_minutes(demo, api, monkeypatch):
    from modelassist.services.training import DEFAULT_PARAMS
    from modelassist.services.training_budget import (
        CLASSIFIER_BUDGET_MINUTES,
        MIN_EPOCHS,
        TRAINING_BUDGET_MINUTES,
        cohort_facts,
    )

    campaign, manager = demo
    cohort = cohort_facts(campaign)
    assert cohort == {"scans": 36, "slices": 40.0, "rows": 128.0, "columns": 128.0}
    # The defaults alone would train far beyond the 5 minutes a click may take.
    assert estimated_minutes(DEFAULT_PARAMS, cohort) > 10

    params = click(api, campaign, manager, monkeypatch, export_id=None)

    assert MIN_EPOCHS <= params["epochs"] <= DEFAULT_PARAMS["epochs"]
    assert params["slices_per_case"] <= DEFAULT_PARAMS["slices_per_case"]
    assert estimated_minutes(params, cohort) <= TRAINING_BUDGET_MINUTES
    # A slower machine stops on time and keeps its best epoch; the rest of a click is ~1 minute.
    assert params["max_minutes"] == TRAINING_BUDGET_MINUTES <= 4
    assert params["classifier_max_minutes"] == CLASSIFIER_BUDGET_MINUTES
    assert params["classifier_epochs"] == DEFAULT_PARAMS["classifier_epochs"]
    assert TRAINING_BUDGET_MINUTES + CLASSIFIER_BUDGET_MINUTES <= 4
    assert params["crop"] == DEFAULT_PARAMS["crop"] and params["lr"] == DEFAULT_PARAMS["lr"]


def test_a_caller_who_sizes_the_run_keeps_their_numbers(demo, api, monkeypatch):
    from modelassist.services.training import DEFAULT_PARAMS

    campaign, manager = demo

    params = click(api, campaign, manager, monkeypatch, params={"epochs": 12})

    # Not cut to the budget behind their back; the classifier follows the number they gave.
    assert params == {**DEFAULT_PARAMS, "epochs": 12, "classifier_epochs": 12}
    assert click(api, campaign, manager, monkeypatch, params={"max_minutes": 60})["epochs"] == 30


@pytest.mark.django_db
def test_without_curated_scans_the_defaults_stand(cast):
    from modelassist.services.training import DEFAULT_PARAMS
    from modelassist.services.training_budget import suggested_training_params

    assert suggested_training_params(cast.campaign, DEFAULT_PARAMS) == DEFAULT_PARAMS

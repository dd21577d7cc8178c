"""The demo shows the whole loop (issue #14 §1): seed_demo curates phantoms of two hospitals
through the real QC services, and one retraining run on them trains, tests on a held-out
split of at least five cases and promotes or keeps with the figures, not "no test cases"."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

# The smallest phantoms and the fewest epochs the training parameters allow: this tests the loop.
SMALL = {"scans": 2, "slices": 8, "size": 32, "curated": 36, "curated_slices": 8, "curated_size": 32}
TINY = {"epochs": 1, "slices_per_case": 2, "batch_size": 4, "patience": 1, "max_minutes": 1}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def seed(**kw) -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out, **{**SMALL, **kw})
    return out.getvalue()


@pytest.mark.django_db
def test_seed_demo_curates_two_hospitals_through_qc_and_one_run_decides():
    from annotation.models import Revision
    from core.models import Campaign, User
    from modelassist.services import training
    from modelassist.services.export import curated_rows
    from qc.models import Check, SpotCheck

    assert "Curated 36 phantom scans of 2 hospitals" in seed()
    campaign = Campaign.objects.get(slug="covid19")
    rows = list(curated_rows(campaign))
    assert len(rows) == 36 and {r.annotation.scan.study.institution.slug for r in rows} == {
        "demo",
        "demo-north",
    }
    # Curated through the services: annotator2's revisions, two passing checks each, spot checks.
    assert {r.revision.author.username for r in rows} == {"annotator2"}
    assert Check.objects.filter(annotation__campaign=campaign, verdict="pass").count() == 72
    assert SpotCheck.objects.filter(review__batch__campaign=campaign, verdict="pass").count() >= 2 * 6
    assert Revision.objects.filter(annotation__campaign=campaign, author__username="annotator2").count() == 36

    # A second seed changes nothing.
    assert "Curated" not in seed() and curated_rows(campaign).count() == 36

    # One "Start retraining" (the API's service, run here instead of by the worker).
    manager = User.objects.get(username="manager")
    run = training.training_request(actor=manager, campaign=campaign, architecture="unet2d-tiny", params=TINY)
    run = training.training_run_execute(run.pk)

    assert run.status == "done", run.error
    m = run.metrics
    assert m["test_cases"] >= 5 and m["split_method"] == "patient" and "same hospital" in m["tested_on"]
    assert (
        "needs_more_scans" not in m
        and m["candidate"]["mean"] is not None
        and m["incumbent"]["mean"] is not None
    )
    # The decision names the figure that decided: the lesion Dice, or (the baseline has no
    # classifier) the new classifier's micro-AUC, with the Dice beside it.
    assert run.decision.startswith(("promoted: ", "not promoted: "))
    assert "mean lesion Dice" in run.decision
    assert f"on the {m['test_cases']} test cases of export v1" in run.decision

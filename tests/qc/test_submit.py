"""revision_submit: who may submit what, and what a submission starts."""

from __future__ import annotations

import pytest

from annotation.models import Annotation, AnnotationState
from annotation.services import model_revision_save
from core.api_errors import Conflict, DomainError, Forbidden
from core.models import AuditEvent, CampaignMember, Role
from qc.models import Check, CheckerPair
from qc.services import revision_submit
from tests.qc.conftest import cube, decide, head_id, make_batch, open_checks, save, submit


@pytest.fixture
def scan(cast, scans_of):
    scan = scans_of(1)[0]
    make_batch(cast.campaign, cast.manager, cast.annotator, [scan])
    return scan


def test_submit_assigns_two_different_checkers_not_the_annotator(cast, scan):
    # given a saved revision
    rev = save(cast.annotator, cast.campaign, scan)
    # when the annotator submits it
    result = submit(cast.annotator, cast.campaign, scan)
    # then the annotation is in check with two checks of round 1 for two different checkers
    annotation = Annotation.objects.get(pk=result.annotation.pk)
    assert annotation.state == AnnotationState.SUBMITTED
    checks = list(Check.objects.filter(annotation=annotation))
    assert len(checks) == 2 and {c.slot for c in checks} == {"A", "B"}
    assert len({c.checker_id for c in checks}) == 2
    assert cast.annotator.pk not in {c.checker_id for c in checks}
    assert all(c.revision_id == rev.pk and c.round == 1 and c.verdict == "pending" for c in checks)
    assert AuditEvent.objects.filter(
        action="annotation_state", to_state="submitted", revision_id=rev.pk
    ).exists()
    assert AuditEvent.objects.filter(action="check_assign").count() == 2


def test_least_loaded_checkers_are_chosen(cast, scans_of):
    first, second = scans_of(2)
    make_batch(cast.campaign, cast.manager, cast.annotator, [first, second])
    save(cast.annotator, cast.campaign, first)
    submit(cast.annotator, cast.campaign, first)
    busy = {c.checker_id for c in open_checks(cast.campaign, first)}
    save(cast.annotator, cast.campaign, second)
    submit(cast.annotator, cast.campaign, second)
    # checker3 had no pending check, so the second annotation goes to checker3 and one of the others
    assert cast.checker3.pk in {c.checker_id for c in open_checks(cast.campaign, second)}
    assert busy == {cast.checker1.pk, cast.checker2.pk}


def test_only_the_batch_annotator_may_submit(cast, scan):
    save(cast.annotator, cast.campaign, scan)
    for someone in (cast.annotator2, cast.checker1, cast.manager):
        with pytest.raises(Forbidden):
            revision_submit(
                actor=someone, campaign=cast.campaign, scan=scan, revision_id=head_id(cast.campaign, scan)
            )


def test_stale_revision_is_refused(cast, scan):
    first = save(cast.annotator, cast.campaign, scan)
    save(cast.annotator, cast.campaign, scan, cube(value=2))
    with pytest.raises(Conflict) as exc:
        revision_submit(actor=cast.annotator, campaign=cast.campaign, scan=scan, revision_id=first.pk)
    assert exc.value.code == "stale_parent" and exc.value.status_code == 409


def test_double_submit_is_a_conflict(cast, scan):
    save(cast.annotator, cast.campaign, scan)
    submit(cast.annotator, cast.campaign, scan)
    with pytest.raises(Conflict) as exc:
        submit(cast.annotator, cast.campaign, scan)
    assert exc.value.code == "already_submitted"
    assert Check.objects.count() == 2


def test_incomplete_scan_labels_are_refused(cast, scan):
    save(cast.annotator, cast.campaign, scan, labels={})
    with pytest.raises(DomainError) as exc:
        submit(cast.annotator, cast.campaign, scan)
    assert exc.value.code == "incomplete_scan_labels" and "diagnosis" in exc.value.detail


def test_the_model_revision_must_be_saved_by_a_person_first(cast, scan):
    model_revision_save(
        campaign=cast.campaign, scan=scan, volume=cube(), model_label="baseline", model_version_id=None
    )
    with pytest.raises(DomainError) as exc:
        submit(cast.annotator, cast.campaign, scan)
    assert exc.value.code == "model_revision" and "save" in exc.value.detail
    with pytest.raises(DomainError) as exc:
        submit(cast.annotator, cast.campaign, make_scan_without_revision(cast, scan))
    assert exc.value.code == "no_revision"


def make_scan_without_revision(cast, scan):
    from tests.qc.conftest import make_batch, make_scans

    other = make_scans(cast.campaign, 1)[0]
    make_batch(cast.campaign, cast.manager, cast.annotator, [other])
    return other


def test_a_failed_revision_cannot_be_resubmitted_unchanged(cast, scan):
    save(cast.annotator, cast.campaign, scan)
    submit(cast.annotator, cast.campaign, scan)
    a, b = open_checks(cast.campaign, scan)
    decide(a, "fail")
    decide(b, "pass")
    with pytest.raises(Conflict) as exc:
        submit(cast.annotator, cast.campaign, scan)
    assert exc.value.code == "unchanged_revision"


def test_resubmission_goes_to_the_same_two_checkers(cast, scan):
    save(cast.annotator, cast.campaign, scan)
    submit(cast.annotator, cast.campaign, scan)
    first = {c.slot: c.checker_id for c in open_checks(cast.campaign, scan)}
    a, b = open_checks(cast.campaign, scan)
    decide(a, "pass")
    decide(b, "fail")
    save(cast.annotator, cast.campaign, scan, cube(y=(8, 18)))
    result = submit(cast.annotator, cast.campaign, scan)
    assert result.round == 2
    assert {c.slot: c.checker_id for c in open_checks(cast.campaign, scan)} == first


def test_too_few_checkers_is_explained(cast, scan):
    CampaignMember.objects.filter(campaign=cast.campaign, role=Role.CHECKER).exclude(
        user=cast.checker1
    ).delete()
    save(cast.annotator, cast.campaign, scan)
    with pytest.raises(DomainError) as exc:
        submit(cast.annotator, cast.campaign, scan)
    assert exc.value.code == "not_enough_checkers"
    assert Annotation.objects.get(scan=scan).state == AnnotationState.IN_PROGRESS  # nothing half-done
    assert not CheckerPair.objects.exists()

"""check_record, check_reassign and blindness in the selectors."""

from __future__ import annotations

import pytest

from annotation.models import Annotation, AnnotationState
from core.api_errors import Conflict, DomainError, Forbidden
from core.models import AuditEvent
from qc import selectors
from qc.models import Check
from qc.services import check_reassign, check_record
from tests.qc.conftest import decide, finding, make_batch, open_checks, save, submit


@pytest.fixture
def submitted(cast, scans_of):
    scan, untouched = scans_of(2)  # a second, unsubmitted scan keeps the batch out of spot check
    make_batch(cast.campaign, cast.manager, cast.annotator, [scan, untouched])
    save(cast.annotator, cast.campaign, scan)
    submit(cast.annotator, cast.campaign, scan)
    return scan


def state_of(scan):
    return Annotation.objects.get(scan=scan).state


def test_both_pass_checks_the_annotation(cast, submitted):
    a, b = open_checks(cast.campaign, submitted)
    decide(a, "pass", time_spent_s=40)
    assert state_of(submitted) == AnnotationState.SUBMITTED  # waits for the second verdict
    decide(b, "pass", time_spent_s=50)
    assert state_of(submitted) == AnnotationState.CHECKED
    event = AuditEvent.objects.get(action="annotation_state", to_state="checked")
    assert event.from_state == "submitted" and event.revision_id == a.revision_id


@pytest.mark.parametrize("verdicts", [("fail", "pass"), ("pass", "fail"), ("fail", "fail")])
def test_any_fail_sends_it_back(cast, submitted, verdicts):
    a, b = open_checks(cast.campaign, submitted)
    decide(a, verdicts[0])
    decide(b, verdicts[1])
    assert state_of(submitted) == AnnotationState.NEEDS_REVISION


def test_fail_needs_a_finding_and_findings_are_validated(cast, submitted):
    a, _ = open_checks(cast.campaign, submitted)
    with pytest.raises(DomainError) as exc:
        check_record(actor=a.checker, check=a, verdict="fail", findings=[])
    assert exc.value.code == "findings_required"
    bad = [
        {"slice": 99, "position": [1, 1], "kind": "boundary", "text": ""},  # slice out of the scan
        {"slice": 1, "position": [40, 1], "kind": "boundary", "text": ""},  # x beyond 32 columns
        {"slice": 1, "position": [1, 1], "kind": "spelling", "text": ""},  # unknown kind
        {"slice": 1, "position": [1], "kind": "other", "text": ""},
    ]
    for f in bad:
        with pytest.raises(DomainError):
            check_record(actor=a.checker, check=a, verdict="fail", findings=[f])
    # a wrong scan-level label needs no place in the volume
    check_record(
        actor=a.checker,
        check=a,
        verdict="fail",
        findings=[{"slice": None, "position": None, "kind": "wrong_scan_label", "text": "no COVID signs"}],
    )
    assert Check.objects.get(pk=a.pk).findings[0]["kind"] == "wrong_scan_label"


def test_only_the_assigned_checker_records_once(cast, submitted):
    a, b = open_checks(cast.campaign, submitted)
    for someone in (b.checker, cast.annotator, cast.manager, cast.senior):
        with pytest.raises(Forbidden):
            check_record(actor=someone, check=a, verdict="pass")
    decide(a, "pass")
    with pytest.raises(Conflict) as exc:
        decide(Check.objects.get(pk=a.pk), "fail")
    assert exc.value.code == "already_decided"


def test_checkers_are_blind_until_both_are_in(cast, submitted):
    a, b = open_checks(cast.campaign, submitted)
    decide(a, "fail", findings=[finding("missed_lesion")])
    # b cannot see a's check at all, and a's own view shows no other verdict
    assert not selectors.checks_visible_to(b.checker).filter(pk=a.pk).exists()
    assert selectors.check_detail(a.checker, selectors.check_for_user(a.checker, a.pk))["other"] is None
    decide(b, "pass")
    view = selectors.check_detail(b.checker, selectors.check_for_user(b.checker, b.pk))
    assert view["other"]["verdict"] == "fail" and view["other"]["findings"][0]["kind"] == "missed_lesion"
    assert selectors.checks_visible_to(b.checker).filter(pk=a.pk).exists()


def test_a_data_manager_who_also_checks_is_blind_too(cast, submitted):
    from core.models import CampaignMember, Role

    a, b = open_checks(cast.campaign, submitted)
    CampaignMember.objects.create(campaign=cast.campaign, user=cast.manager, role=Role.CHECKER)
    check_reassign(actor=cast.manager, check=b, checker=cast.manager)
    decide(a, "pass")
    assert not selectors.checks_visible_to(cast.manager).filter(pk=a.pk).exists()
    board = selectors.batch_board(cast.manager, a.annotation.scan.batch_items.get().batch)
    assert {c["verdict"] for c in board["items"][0]["checks"]} == {"hidden", "pending"}


def test_reassign_moves_the_check_and_the_pair_slot(cast, submitted):
    a, b = open_checks(cast.campaign, submitted)
    spare = ({cast.checker1, cast.checker2, cast.checker3} - {a.checker, b.checker}).pop()
    check_reassign(actor=cast.manager, check=a, checker=spare)
    assert Check.objects.get(pk=a.pk).checker == spare
    assert Annotation.objects.get(scan=submitted).checker_pair.checker_a == spare
    with pytest.raises(DomainError) as exc:  # the two checkers must differ
        check_reassign(actor=cast.manager, check=a, checker=b.checker)
    assert exc.value.code == "same_checker"
    with pytest.raises(DomainError) as exc:  # never the annotator
        from core.models import CampaignMember, Role

        CampaignMember.objects.create(campaign=cast.campaign, user=cast.annotator, role=Role.CHECKER)
        check_reassign(actor=cast.manager, check=a, checker=cast.annotator)
    assert exc.value.code == "own_work"
    with pytest.raises(Forbidden):
        check_reassign(actor=cast.checker1, check=a, checker=cast.checker3)
    decide(Check.objects.get(pk=b.pk), "pass")
    with pytest.raises(Conflict):
        check_reassign(actor=cast.manager, check=Check.objects.get(pk=b.pk), checker=cast.checker3)
    assert AuditEvent.objects.filter(action="check_reassign").count() == 1


def test_annotator_findings_are_anonymised(cast, submitted):
    a, b = open_checks(cast.campaign, submitted)
    decide(a, "fail", findings=[finding("boundary", text="left lower lobe edge")])
    decide(b, "pass", findings=[finding("other", text="fine otherwise")])
    out = selectors.annotator_findings(Annotation.objects.get(scan=submitted))
    assert out["source"] == "checks" and out["round"] == 1
    assert [r["reviewer"] for r in out["reviews"]] == ["checker A", "checker B"]
    text = str(out)
    for checker in (cast.checker1, cast.checker2, cast.checker3):
        assert checker.username not in text

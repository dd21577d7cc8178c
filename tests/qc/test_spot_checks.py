"""QC step 3: the reproducible draw, the senior's verdicts, approval, curation and reopening."""

from __future__ import annotations

import pytest

from annotation.models import Annotation, AnnotationState
from core.api_errors import Conflict, DomainError, Forbidden
from core.models import AuditEvent, CampaignMember, Role
from qc import selectors
from qc.models import BatchReview, CuratedRevision, SpotCheck
from qc.services import (
    batch_reopen,
    spot_check_reassign,
    spot_check_record,
    spot_check_replay,
    spot_check_sample_size,
)
from tests.qc.conftest import cube, decide, finding, make_batch, open_checks, save, submit


def pass_steps_1_2(cast, scans):
    for scan in scans:
        save(cast.annotator, cast.campaign, scan)
        submit(cast.annotator, cast.campaign, scan)
    for scan in scans:
        for check in open_checks(cast.campaign, scan):
            decide(check, "pass")


@pytest.fixture
def in_spot_check(cast, scans_of):
    scans = scans_of(4)
    batch = make_batch(cast.campaign, cast.manager, cast.annotator, scans)
    pass_steps_1_2(cast, scans)
    return batch, scans


def states(scans):
    return {a.scan_id: a.state for a in Annotation.objects.filter(scan__in=scans)}


@pytest.mark.parametrize(
    ("share", "n", "k"),
    [(0.3, 50, 15), (0.3, 10, 3), (0.3, 4, 2), (0.3, 1, 1), (0.3, 7, 3), (1.0, 5, 5), (0.01, 3, 1)],
)
def test_sample_size_is_the_share_rounded_up(share, n, k):
    assert spot_check_sample_size(share, n) == k


def test_a_fully_checked_batch_enters_spot_check_with_a_replayable_draw(cast, in_spot_check):
    batch, scans = in_spot_check
    review = BatchReview.objects.get(batch=batch)
    draw = review.current_draw()
    assert review.state == "spot_check" and draw.sample_size == 2  # ceil(0.3 × 4)
    assert draw.sampled_scan_ids == spot_check_replay(draw.seed, [s.pk for s in scans], 2)
    st = states(scans)
    assert sorted(s for s, v in st.items() if v == AnnotationState.SPOT_CHECK) == sorted(
        draw.sampled_scan_ids
    )
    assert all(v == AnnotationState.CHECKED for s, v in st.items() if s not in draw.sampled_scan_ids)
    spot_checks = SpotCheck.objects.filter(review=review)
    assert spot_checks.count() == 2 and {sc.senior for sc in spot_checks} == {cast.senior}
    assert AuditEvent.objects.filter(
        action="batch_review_state", to_state="spot_check", details__seed=draw.seed
    ).exists()


def test_all_sampled_pass_approves_and_curates_every_head(
    cast, in_spot_check, sent_tasks, django_capture_on_commit_callbacks
):
    batch, scans = in_spot_check
    with django_capture_on_commit_callbacks(execute=True):
        for sc in selectors.senior_queue(cast.senior):
            spot_check_record(actor=cast.senior, spot_check=sc, verdict="pass", time_spent_s=20)
    review = BatchReview.objects.get(batch=batch)
    assert review.state == "approved" and review.approved_by == cast.senior
    assert set(states(scans).values()) == {AnnotationState.CURATED}
    curated = {c.annotation_id: c.revision_id for c in selectors.curated_revisions(cast.campaign)}
    assert curated == {a.pk: a.head_id for a in Annotation.objects.filter(scan__in=scans)}
    assert sent_tasks == [("modelassist.tasks.retrain_if_due", [cast.campaign.pk], {"queue": "train"})]


def test_a_failed_scan_goes_round_the_loop_and_back_to_the_senior(cast, in_spot_check):
    batch, _ = in_spot_check
    failed, passed = selectors.senior_queue(cast.senior)
    pair_before = {c.slot: c.checker_id for c in open_checks(cast.campaign, failed.annotation.scan)}
    spot_check_record(
        actor=cast.senior,
        spot_check=failed,
        verdict="fail",
        findings=[finding("wrong_class", text="this is consolidation")],
    )
    spot_check_record(actor=cast.senior, spot_check=passed, verdict="pass")
    scan = failed.annotation.scan
    assert states([scan])[scan.pk] == AnnotationState.NEEDS_REVISION
    assert BatchReview.objects.get(batch=batch).state == "spot_check"  # stays until all sampled pass
    findings = selectors.annotator_findings(Annotation.objects.get(scan=scan))
    assert findings["source"] == "spot_check" and findings["reviews"][0]["reviewer"] == "senior"
    # the annotator revises; the same two checkers recheck
    save(cast.annotator, cast.campaign, scan, cube(value=2))
    assert submit(cast.annotator, cast.campaign, scan).round == 2
    assert {c.slot: c.checker_id for c in open_checks(cast.campaign, scan)} == pair_before
    for check in open_checks(cast.campaign, scan):
        decide(check, "pass")
    # checked again → back to the same senior
    assert states([scan])[scan.pk] == AnnotationState.SPOT_CHECK
    (again,) = selectors.senior_queue(cast.senior)
    assert again.annotation.scan == scan and again.revision_id == Annotation.objects.get(scan=scan).head_id
    spot_check_record(actor=cast.senior, spot_check=again, verdict="pass")
    assert BatchReview.objects.get(batch=batch).state == "approved"
    assert CuratedRevision.objects.get(annotation__scan=scan).revision_id == again.revision_id
    assert again.revision_id != failed.revision_id


def test_only_the_assigned_senior_records(cast, in_spot_check):
    sc = selectors.senior_queue(cast.senior).first()
    for someone in (cast.annotator, cast.checker1, cast.manager):
        with pytest.raises(Forbidden):
            spot_check_record(actor=someone, spot_check=sc, verdict="pass")
    with pytest.raises(DomainError):
        spot_check_record(actor=cast.senior, spot_check=sc, verdict="fail", findings=[])
    spot_check_record(actor=cast.senior, spot_check=sc, verdict="pass")
    with pytest.raises(Conflict):
        spot_check_record(actor=cast.senior, spot_check=SpotCheck.objects.get(pk=sc.pk), verdict="pass")


def test_the_senior_is_never_a_checker_of_the_scan(cast, scans_of):
    # checker1 is also a senior; with checker3 away, checker1 checks every scan and may spot-check none
    CampaignMember.objects.create(campaign=cast.campaign, user=cast.checker1, role=Role.SENIOR)
    CampaignMember.objects.filter(user=cast.checker3).delete()
    scans = scans_of(3)
    make_batch(cast.campaign, cast.manager, cast.annotator, scans)
    pass_steps_1_2(cast, scans)
    assert {sc.senior for sc in SpotCheck.objects.all()} == {cast.senior}
    with pytest.raises(DomainError) as exc:
        spot_check_reassign(actor=cast.manager, spot_check=SpotCheck.objects.first(), senior=cast.checker1)
    assert exc.value.code == "own_work"


def test_without_an_eligible_senior_a_data_manager_assigns_one(cast, scans_of):
    CampaignMember.objects.filter(user=cast.senior).delete()
    scans = scans_of(2)
    make_batch(cast.campaign, cast.manager, cast.annotator, scans)
    pass_steps_1_2(cast, scans)
    sc = SpotCheck.objects.get()
    assert sc.senior is None
    board = selectors.batch_board(cast.manager, sc.review.batch)
    assert next(i for i in board["items"] if i["scan_id"] == sc.annotation.scan_id)["holder"] == {
        "role": "senior",
        "users": [],
    }
    CampaignMember.objects.create(campaign=cast.campaign, user=cast.senior, role=Role.SENIOR)
    spot_check_reassign(actor=cast.manager, spot_check=sc, senior=cast.senior)
    spot_check_record(actor=cast.senior, spot_check=SpotCheck.objects.get(), verdict="pass")
    assert BatchReview.objects.get().state == "approved"


def test_nothing_but_a_reopen_leaves_approved(cast, in_spot_check):
    batch, scans = in_spot_check
    for sc in selectors.senior_queue(cast.senior):
        spot_check_record(actor=cast.senior, spot_check=sc, verdict="pass")
    with pytest.raises(Conflict):
        save(cast.annotator, cast.campaign, scans[0])
    with pytest.raises(Conflict):
        submit(cast.annotator, cast.campaign, scans[0])
    with pytest.raises(Forbidden):
        batch_reopen(actor=cast.senior, batch=batch, reason="looks odd")
    with pytest.raises(DomainError):
        batch_reopen(actor=cast.manager, batch=batch, reason="  ")
    assert BatchReview.objects.get(batch=batch).state == "approved"


def test_reopen_withdraws_curation_and_goes_back_to_the_senior(cast, in_spot_check):
    batch, scans = in_spot_check
    for sc in selectors.senior_queue(cast.senior):
        spot_check_record(actor=cast.senior, spot_check=sc, verdict="pass")
    first_draw = BatchReview.objects.get(batch=batch).current_draw()
    named = next(s.pk for s in scans if s.pk not in first_draw.sampled_scan_ids)
    # when a data manager reopens, naming a scan the first draw missed
    batch_reopen(
        actor=cast.manager, batch=batch, reason="export QA: wrong diagnosis on one scan", scan_ids=[named]
    )
    review = BatchReview.objects.get(batch=batch)
    draw = review.current_draw()
    assert review.state == "spot_check" and draw.number == 2 and named in draw.scan_ids
    assert not selectors.curated_revisions(cast.campaign).exists()
    assert CuratedRevision.objects.filter(withdrawn_at__isnull=False).count() == 4
    assert AuditEvent.objects.filter(action="batch_reopen", details__reason__startswith="export QA").exists()
    assert set(states(scans).values()) <= {AnnotationState.CHECKED, AnnotationState.SPOT_CHECK}
    for sc in selectors.senior_queue(cast.senior):
        spot_check_record(actor=cast.senior, spot_check=sc, verdict="pass")
    assert BatchReview.objects.get(batch=batch).state == "approved"
    assert selectors.curated_revisions(cast.campaign).count() == 4


def test_only_an_approved_batch_can_be_reopened(cast, in_spot_check):
    batch, _ = in_spot_check
    with pytest.raises(Conflict) as exc:
        batch_reopen(actor=cast.manager, batch=batch, reason="too early")
    assert exc.value.code == "not_approved"

"""Property: whatever anyone does, in any order, the QC rules hold.

Hypothesis drives random sequences of actions — saves, submits, verdicts, reassignments, spot
checks, reopenings — by the right person or by anyone at all (people hold overlapping roles
here: the annotator and the data manager also check, a checker and the annotator are also
seniors). Refused actions are fine; after every step the invariants must hold:

- no batch is approved with a scan that was not passed by both checkers at its curated revision;
- no one checks or spot-checks their own work; the two checkers of a round differ;
- no checker sees the other checker's verdict before both are in;
- no revision is lost, and the head is always the newest one.

Each example runs inside a savepoint that is rolled back, so examples do not see each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from annotation.models import Annotation, AnnotationState, Revision, RevisionSource
from platform_core.api_errors import DomainError
from platform_core.models import AuditEvent, CampaignMember, Role
from qc import selectors
from qc.models import BatchReview, BatchReviewState, Check, CuratedRevision, SpotCheck, Verdict
from qc.services import (
    batch_reopen,
    check_reassign,
    check_record,
    revision_submit,
    spot_check_reassign,
    spot_check_record,
)
from qc.services.rules import makers_of
from tests.qc.conftest import cube, finding, head_id, make_batch, make_scans, save

ACTIONS = ["save", "submit", "verdict", "verdict", "verdict", "reassign", "spot", "spot", "spot_reassign", "reopen"]


@dataclass
class World:
    cast: object
    batch: object
    scans: list
    people: list
    saved: dict = field(default_factory=dict)  # revision id → label sha, for every successful save


def build_world(cast) -> World:
    for user, role in [(cast.annotator, Role.CHECKER), (cast.manager, Role.CHECKER),
                       (cast.checker1, Role.SENIOR), (cast.annotator, Role.SENIOR)]:
        CampaignMember.objects.create(campaign=cast.campaign, user=user, role=role)
    scans = make_scans(cast.campaign, 3)
    batch = make_batch(cast.campaign, cast.manager, cast.annotator, scans)
    people = [cast.annotator, cast.annotator2, cast.checker1, cast.checker2, cast.checker3, cast.senior,
              cast.manager, cast.outsider]
    return World(cast, batch, scans, people)


def pick_actor(data, world, right):
    if right is not None and data.draw(st.integers(0, 3), label="right person?") > 0:
        return right
    return data.draw(st.sampled_from(world.people), label="anyone")


def pick(data, items, label):
    return data.draw(st.sampled_from(items), label=label) if items else None


def step(data, world: World) -> None:
    cast, campaign = world.cast, world.cast.campaign
    action = data.draw(st.sampled_from(ACTIONS), label="action")
    verdict = data.draw(st.sampled_from(["pass", "pass", "fail"]), label="verdict")
    findings = [finding()] if data.draw(st.booleans(), label="findings?") or verdict == "fail" else []
    if action in ("save", "submit"):
        scan = pick(data, world.scans, "scan")
        actor = pick_actor(data, world, cast.annotator)
        head = head_id(campaign, scan)
        stale = data.draw(st.booleans(), label="stale?") and head is not None
        parent = head - 1 if stale else head
        if action == "save":
            volume = cube(value=data.draw(st.sampled_from([1, 2, 3]), label="class"))
            from annotation.services import revision_save

            rev = revision_save(actor=actor, campaign=campaign, scan=scan, parent_id=parent, full=volume,
                                scan_labels={"diagnosis": "COVID-19"})
            world.saved[rev.pk] = rev.label_sha256
        else:
            revision_submit(actor=actor, campaign=campaign, scan=scan, revision_id=parent)
    elif action in ("verdict", "reassign"):
        checks = list(Check.objects.order_by("pk"))
        pending = [c for c in checks if c.verdict == Verdict.PENDING]
        check = pick(data, pending if pending and data.draw(st.booleans(), label="pending?") else checks, "check")
        if check is None:
            return
        if action == "verdict":
            actor = pick_actor(data, world, check.checker)
            check_record(actor=actor, check=check, verdict=verdict, findings=findings)
        else:
            actor = pick_actor(data, world, cast.manager)
            check_reassign(actor=actor, check=check, checker=pick(data, world.people, "new checker"))
    elif action in ("spot", "spot_reassign"):
        spot = pick(data, list(SpotCheck.objects.order_by("pk")), "spot check")
        if spot is None:
            return
        if action == "spot":
            actor = pick_actor(data, world, spot.senior)
            spot_check_record(actor=actor, spot_check=spot, verdict=verdict, findings=findings)
        else:
            actor = pick_actor(data, world, cast.manager)
            spot_check_reassign(actor=actor, spot_check=spot, senior=pick(data, world.people, "new senior"))
    elif action == "reopen":
        actor = pick_actor(data, world, cast.manager)
        batch_reopen(actor=actor, batch=world.batch, reason="property test")


# --- the invariants -----------------------------------------------------------------------------


def assert_approved_means_checked(world: World) -> None:
    review = BatchReview.objects.filter(batch=world.batch).first()
    if review is None or review.state != BatchReviewState.APPROVED:
        return
    annotations = list(Annotation.objects.filter(campaign=world.cast.campaign, scan__in=world.scans))
    assert len(annotations) == len(world.scans)
    for a in annotations:
        assert a.state == AnnotationState.CURATED
        curated = CuratedRevision.objects.get(annotation=a, withdrawn_at__isnull=True)
        assert curated.revision_id == a.head_id
        passes = Check.objects.filter(revision_id=a.head_id, verdict=Verdict.PASS)
        assert passes.count() == 2 and passes.values("checker").distinct().count() == 2
    for scan_id in review.current_draw().scan_ids:
        head = Annotation.objects.get(campaign=world.cast.campaign, scan_id=scan_id).head_id
        assert SpotCheck.objects.filter(revision_id=head, verdict=Verdict.PASS).exists()


def assert_no_one_reviews_own_work() -> None:
    for a in Annotation.objects.all():
        makers = makers_of(a)
        checks = list(Check.objects.filter(annotation=a))
        assert not {c.checker_id for c in checks} & makers
        rounds: dict[int, list[int]] = {}
        for c in checks:
            rounds.setdefault(c.round, []).append(c.checker_id)
        assert all(len(ids) == 2 and ids[0] != ids[1] for ids in rounds.values())
        seniors = {s.senior_id for s in SpotCheck.objects.filter(annotation=a, senior__isnull=False)}
        assert not seniors & (makers | {c.checker_id for c in checks})


def assert_blind(world: World) -> None:
    pending = Check.objects.filter(verdict=Verdict.PENDING).select_related("annotation__scan", "revision")
    for mine in pending:
        other = Check.objects.get(annotation_id=mine.annotation_id, round=mine.round, slot="B" if mine.slot == "A" else "A")
        me = mine.checker
        assert not selectors.checks_visible_to(me).filter(pk=other.pk).exists()
        assert selectors.check_detail(me, mine)["other"] is None
        if other.verdict != Verdict.PENDING and selectors.campaigns_managed_by(me).exists():
            board = selectors.batch_board(me, world.batch)
            shown = {c["verdict"] for i in board["items"] for c in i["checks"] if c["checker"] != me.username
                     and i["annotation_id"] == mine.annotation_id}
            assert shown <= {"hidden", "pending"}


def assert_no_revision_lost(world: World) -> None:
    stored = dict(Revision.objects.filter(source=RevisionSource.HUMAN).values_list("pk", "label_sha256"))
    assert stored == world.saved
    for a in Annotation.objects.all():
        numbers = list(a.revisions.order_by("number").values_list("number", flat=True))
        assert numbers == list(range(len(numbers)))
        if numbers:
            assert a.head_id == a.revisions.order_by("-number").first().pk


def assert_invariants(world: World) -> None:
    assert_approved_means_checked(world)
    assert_no_one_reviews_own_work()
    assert_blind(world)
    assert_no_revision_lost(world)


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_sequence_of_actions_breaks_the_qc_rules(cast, data):
    with transaction.atomic():
        world = build_world(cast)
        for _ in range(data.draw(st.integers(10, 45), label="steps")):
            try:
                step(data, world)
            except DomainError:
                pass  # refused: a wrong person, a wrong moment or bad input; the state must be intact
            assert_invariants(world)
        review = BatchReview.objects.filter(batch=world.batch).first()
        event(f"batch ended {review.state if review else 'annotating'}")
        event(f"reopened: {AuditEvent.objects.filter(action='batch_reopen').exists()}")
        transaction.set_rollback(True)


@pytest.mark.django_db
def test_a_well_behaved_sequence_reaches_approval(cast):
    """The property test's world can be approved at all (so its invariants are not vacuous)."""
    world = build_world(cast)
    for scan in world.scans:
        rev = save(cast.annotator, cast.campaign, scan)
        world.saved[rev.pk] = rev.label_sha256
        revision_submit(actor=cast.annotator, campaign=cast.campaign, scan=scan, revision_id=rev.pk)
        for check in Check.objects.filter(annotation__scan=scan):
            check_record(actor=check.checker, check=check, verdict="pass")
            assert_invariants(world)
    for spot in SpotCheck.objects.all():
        spot_check_record(actor=spot.senior, spot_check=spot, verdict="pass")
    assert BatchReview.objects.get(batch=world.batch).state == BatchReviewState.APPROVED
    assert_invariants(world)

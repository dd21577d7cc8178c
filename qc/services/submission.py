"""QC steps 1–2: submitting a revision and handing it to the two checkers of the annotation."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from annotation.models import EDITABLE_STATES, Annotation, AnnotationState, Revision, RevisionSource
from annotation.services import annotation_transition, stale_revision_conflict
from core.api_errors import Conflict, DomainError, Forbidden
from core.label_schema import validate_scan_labels
from core.models import Campaign, Scan, User
from core.permissions import require_data_manager
from core.services.audit import audit_record
from core.services.batches import open_batch_of
from qc.models import Check, CheckerPair, Slot, SpotCheck, Verdict
from qc.services import locks, rules


@dataclass
class Submission:
    annotation: Annotation
    revision: Revision
    round: int
    checks: list[Check]


def revision_submit(*, actor: User, campaign: Campaign, scan: Scan, revision_id: int | None) -> Submission:
    """The annotator submits the head revision: the annotation goes to its two checkers."""
    batch = open_batch_of(actor, campaign, scan.pk)
    if batch is None:
        raise Forbidden(
            "only the annotator of the open batch holding this scan can submit it", code="not_your_batch"
        )
    annotation = Annotation.objects.filter(campaign=campaign, scan=scan).first()
    if annotation is None or annotation.head_id is None:
        raise DomainError("save your labels before submitting", code="no_revision")
    with transaction.atomic():
        annotation = locks.lock_annotation(annotation.pk)
        head = _submittable_head(annotation, revision_id)
        round_no = (
            Check.objects.filter(annotation=annotation)
            .order_by("-round")
            .values_list("round", flat=True)
            .first()
            or 0
        ) + 1
        annotation_transition(
            annotation, AnnotationState.SUBMITTED, actor=actor, revision=head, round=round_no
        )
        pair = _checker_pair(actor, annotation)
        checks = [
            Check.objects.create(
                annotation=annotation,
                revision=head,
                round=round_no,
                slot=slot,
                checker_id=pair.checker_of(slot),
            )
            for slot in (Slot.A, Slot.B)
        ]
        for check in checks:
            audit_record(
                actor=actor,
                action="check_assign",
                obj=check,
                campaign=campaign,
                scan=scan,
                revision_id=head.pk,
                to_state=Verdict.PENDING,
                round=round_no,
                slot=check.slot,
                checker=check.checker.username,
            )
    return Submission(annotation=annotation, revision=head, round=round_no, checks=checks)


def _submittable_head(annotation: Annotation, revision_id: int | None) -> Revision:
    """Checked inside the annotation lock: the order of these checks is what a double click meets."""
    head = annotation.head
    assert head is not None
    if revision_id != head.pk:
        raise stale_revision_conflict(
            annotation,
            revision_id,
            "a newer revision of this scan exists (stale revision); reload, then submit the latest",
            code="stale_parent",
        )
    if annotation.state not in EDITABLE_STATES:
        raise Conflict(
            f"this revision is already submitted (the scan is {AnnotationState(annotation.state).label.lower()})",
            code="already_submitted",
        )
    if head.source != RevisionSource.HUMAN:
        raise DomainError(
            "the latest revision is the model's pre-segmentation; accept or edit it and save, then submit",
            code="model_revision",
        )
    failed = (
        Check.objects.filter(revision=head, verdict=Verdict.FAIL).exists()
        or SpotCheck.objects.filter(revision=head, verdict=Verdict.FAIL).exists()
    )
    if failed:
        raise Conflict(
            "this revision was already failed; save a revision that addresses the findings",
            code="unchanged_revision",
        )
    try:
        validate_scan_labels(annotation.campaign.label_schema, head.scan_labels, require_complete=True)
    except ValueError as exc:
        raise DomainError(str(exc), code="incomplete_scan_labels") from exc
    return head


def _checker_pair(actor: User, annotation: Annotation) -> CheckerPair:
    """The annotation's two checkers: chosen least-loaded on first submission, then kept for
    every round (step 2 goes back to the same two). A pair member who has since become a maker
    of the annotation, or lost the checker role, is replaced (audited)."""
    makers = rules.makers_of(annotation)
    pair = CheckerPair.objects.select_for_update(of=("self",)).filter(annotation=annotation).first()
    if pair is None:
        candidates = rules.checkers_by_load(annotation.campaign, exclude=makers)
        if len(candidates) < 2:
            raise DomainError(
                "this campaign needs two checkers other than the annotator; ask a data manager to add one",
                code="not_enough_checkers",
            )
        pair = CheckerPair.objects.create(
            annotation=annotation, checker_a=candidates[0], checker_b=candidates[1]
        )
        audit_record(
            actor=actor,
            action="checker_pair_assign",
            obj=pair,
            campaign=annotation.campaign_id,
            scan=annotation.scan_id,
            to_state=f"{candidates[0].username},{candidates[1].username}",
        )
        return pair
    eligible = {u.pk for u in rules.checkers_by_load(annotation.campaign, exclude=makers)}
    for slot in (Slot.A, Slot.B):
        current = pair.checker_of(slot)
        if current not in eligible:
            other = pair.checker_of(Slot.B if slot == Slot.A else Slot.A)
            _replace_pair_member(actor, annotation, pair, slot, exclude=makers | {other, current})
    return pair


def _replace_pair_member(
    actor: User, annotation: Annotation, pair: CheckerPair, slot: str, *, exclude: set[int]
) -> None:
    candidates = rules.checkers_by_load(annotation.campaign, exclude=exclude)
    if not candidates:
        raise DomainError(
            "this campaign needs two checkers other than the annotator; ask a data manager to add one",
            code="not_enough_checkers",
        )
    previous = User.objects.get(pk=pair.checker_of(slot)).username
    setattr(pair, "checker_a" if slot == Slot.A else "checker_b", candidates[0])
    pair.save(update_fields=["checker_a" if slot == Slot.A else "checker_b"])
    audit_record(
        actor=actor,
        action="checker_replace",
        obj=pair,
        campaign=annotation.campaign_id,
        scan=annotation.scan_id,
        from_state=previous,
        to_state=candidates[0].username,
        slot=slot,
    )


def check_reassign(*, actor: User, check: Check, checker: User) -> Check:
    """A data manager hands a pending check (and that slot of the pair, for later rounds) to another checker."""
    require_data_manager(actor, check.annotation.campaign, "reassign checks")
    with transaction.atomic():
        annotation = locks.lock_annotation(check.annotation_id)
        round_checks = list(
            Check.objects.select_for_update(of=("self",))
            .filter(annotation=annotation, round=check.round)
            .order_by("pk")
        )
        mine = next(c for c in round_checks if c.pk == check.pk)
        other = next(c for c in round_checks if c.pk != check.pk)
        if mine.verdict != Verdict.PENDING:
            raise Conflict(
                "this check already has a verdict; only pending checks move", code="already_decided"
            )
        rules.require_checker_eligible(checker, annotation, other_checker_id=other.checker_id)
        previous = mine.checker.username
        mine.checker = checker
        mine.save(update_fields=["checker"])
        field = "checker_a" if mine.slot == Slot.A else "checker_b"
        CheckerPair.objects.filter(annotation=annotation).update(**{field: checker})
        audit_record(
            actor=actor,
            action="check_reassign",
            obj=mine,
            campaign=annotation.campaign_id,
            scan=annotation.scan_id,
            revision_id=mine.revision_id,
            from_state=previous,
            to_state=checker.username,
            slot=mine.slot,
            round=mine.round,
        )
    return mine

"""QC steps 1–2: a checker's verdict, and closing a round once both verdicts are in.

Blindness: a verdict is stored on the checker's own row; nothing about it is shown to the
other checker until the round is closed (see qc.selectors.checks_visible_to).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from annotation.models import Annotation, AnnotationState
from annotation.services import annotation_transition, stale_revision_conflict
from core.api_errors import Conflict, Forbidden
from core.models import Role, User
from core.selectors import has_campaign_role
from core.services.audit import audit_record
from qc.models import BatchReview, Check, Verdict
from qc.services import locks, reviews, rules


def check_record(
    *, actor: User, check: Check, verdict: str, findings: list | None = None, time_spent_s: float = 0.0
) -> Check:
    """Record the actor's pass or fail (with findings) on their check."""
    annotation = check.annotation
    verdict = rules.clean_verdict(verdict)
    cleaned = rules.clean_findings(findings, annotation.scan, verdict)
    seconds = rules.clean_time_spent(time_spent_s)
    item = rules.open_item_of(annotation)
    review = locks.review_for(item.batch) if item is not None else None
    with transaction.atomic():
        if review is not None:
            review = locks.lock_review(review.pk)
        annotation = locks.lock_annotation(annotation.pk)
        round_checks = list(
            Check.objects.select_for_update(of=("self",))
            .filter(annotation=annotation, round=check.round)
            .order_by("pk")
        )
        mine = next(c for c in round_checks if c.pk == check.pk)
        _require_checker_of(actor, mine, annotation)
        if mine.verdict != Verdict.PENDING:
            raise Conflict("you already gave a verdict on this check", code="already_decided")
        if annotation.state != AnnotationState.SUBMITTED or annotation.head_id != mine.revision_id:
            raise stale_revision_conflict(
                annotation,
                mine.revision_id,
                "this check is no longer current; reload your queue",
                code="stale_check",
            )
        mine.verdict, mine.findings, mine.time_spent_s, mine.decided_at = (
            verdict,
            cleaned,
            seconds,
            timezone.now(),
        )
        mine.save(update_fields=["verdict", "findings", "time_spent_s", "decided_at"])
        audit_record(
            actor=actor,
            action="check_record",
            obj=mine,
            campaign=annotation.campaign_id,
            scan=annotation.scan_id,
            revision_id=mine.revision_id,
            from_state=Verdict.PENDING,
            to_state=verdict,
            round=mine.round,
            slot=mine.slot,
            findings=len(cleaned),
        )
        if all(c.verdict != Verdict.PENDING for c in round_checks):
            _close_round(actor, annotation, round_checks, review)
    return mine


def _require_checker_of(actor: User, check: Check, annotation: Annotation) -> None:
    if check.checker_id != actor.pk:
        raise Forbidden("this check is assigned to another checker", code="not_your_check")
    if not has_campaign_role(actor, annotation.campaign, Role.CHECKER):
        raise Forbidden(
            "you are no longer a checker of this campaign; a data manager can reassign the check",
            code="wrong_role",
        )
    if actor.pk in rules.makers_of(annotation):  # defence in depth: assignment already excludes makers
        raise Forbidden("no one checks their own annotation", code="own_work")


def _close_round(
    actor: User, annotation: Annotation, round_checks: list[Check], review: BatchReview | None
) -> None:
    """Both verdicts are in. Both pass: checked (and on to the batch); else back to the annotator."""
    round_no = round_checks[0].round
    if all(c.verdict == Verdict.PASS for c in round_checks):
        annotation_transition(
            annotation, AnnotationState.CHECKED, actor=actor, revision=annotation.head, round=round_no
        )
        if review is not None:
            reviews.on_annotation_checked(actor, review, annotation)
    else:
        annotation_transition(
            annotation,
            AnnotationState.NEEDS_REVISION,
            actor=actor,
            revision=annotation.head,
            round=round_no,
            failed_slots=[c.slot for c in round_checks if c.verdict == Verdict.FAIL],
        )

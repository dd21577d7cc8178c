"""QC step 3 and the batch state machine: the spot-check draw, the senior's verdicts,
approval (curation) and a data manager's reopening.

A batch enters spot check when every one of its scans is checked. A random, reproducible
share is drawn (the seed is stored); the senior passes or fails each sampled scan. A failed
scan goes back through steps 1–2 and then to the senior again; the batch is approved when
every sampled scan has passed. Only `batch_reopen` leaves APPROVED.
"""

from __future__ import annotations

import math
import random
import secrets
from typing import Any

from django.db import transaction
from django.utils import timezone

from annotation.models import Annotation, AnnotationState
from annotation.services import annotation_transition, stale_revision_conflict
from core.api_errors import Conflict, DomainError, Forbidden
from core.models import Batch, BatchItem, Role, User
from core.permissions import require_data_manager
from core.selectors import has_campaign_role
from core.services.audit import audit_record
from platform_core.celery import app as celery_app
from qc.models import (
    BATCH_TRANSITIONS,
    BatchReview,
    BatchReviewState,
    CuratedRevision,
    SpotCheck,
    SpotCheckDraw,
    Verdict,
)
from qc.services import locks, rules

# Task of a higher layer (modelassist), sent by name: qc never imports it.
RETRAIN_TASK = "modelassist.tasks.retrain_if_due"


class IllegalBatchTransition(Conflict):
    code = "illegal_transition"


def batch_review_transition(review: BatchReview, to: str, *, actor: User | None, **details: Any) -> None:
    """The only place a batch review's state changes. Call inside the caller's transaction,
    on a review row the caller has locked."""
    current = review.state
    if to not in BATCH_TRANSITIONS[current]:
        raise IllegalBatchTransition(
            f"a batch that is {BatchReviewState(current).label.lower()} cannot become "
            f"{BatchReviewState(to).label.lower()}"
        )
    fields: dict[str, Any] = {"state": to}
    if to == BatchReviewState.APPROVED:
        fields.update(approved_at=timezone.now(), approved_by=actor)
    updated = BatchReview.objects.filter(pk=review.pk, state=current).update(**fields)
    if updated != 1:  # compare-and-swap, on top of the lock: never move from a stale copy
        raise Conflict("the batch changed state meanwhile; reload and try again", code="state_changed")
    for name, value in fields.items():
        setattr(review, name, value)
    audit_record(
        actor=actor,
        action="batch_review_state",
        obj=review,
        campaign=review.campaign_id,
        from_state=current,
        to_state=to,
        batch=review.batch_id,
        **details,
    )


# --- the draw -------------------------------------------------------------------------------


def spot_check_sample_size(share: float, n: int) -> int:
    """30 % rounded up: the senior reads at least that share of every batch (and at least one scan).
    Rounded to 1e-9 first so float noise (0.3 × 10 = 3.0000000000000004) does not add a scan."""
    return min(n, max(1, math.ceil(round(share * n, 9))))


def spot_check_replay(seed: int, population: list[int], k: int) -> list[int]:
    """The draw, replayable from what SpotCheckDraw stores."""
    return random.Random(seed).sample(sorted(population), k)


def _new_seed() -> int:
    return secrets.randbits(62)


def batch_scan_ids(batch: Batch) -> list[int]:
    return sorted(BatchItem.objects.filter(batch=batch).values_list("scan_id", flat=True))


def spot_check_sample(
    *, actor: User | None, review: BatchReview, added_scan_ids: list[int] | tuple = (), reason: str = ""
) -> SpotCheckDraw:
    """Draw the sample and hand each sampled scan to a senior. Caller holds the review lock."""
    population = batch_scan_ids(review.batch)
    k = spot_check_sample_size(review.campaign.spot_check_share, len(population))
    seed = _new_seed()
    sampled = spot_check_replay(seed, population, k)
    number = (review.draws.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    draw = SpotCheckDraw.objects.create(
        review=review,
        number=number,
        seed=seed,
        share=review.campaign.spot_check_share,
        population=population,
        sample_size=k,
        sampled_scan_ids=sampled,
        added_scan_ids=[s for s in added_scan_ids if s not in sampled],
        reason=reason,
    )
    batch_review_transition(
        review,
        BatchReviewState.SPOT_CHECK,
        actor=actor,
        draw=number,
        seed=seed,
        sample_size=k,
        sampled_scan_ids=sampled,
        added_scan_ids=draw.added_scan_ids,
    )
    for annotation in locks.lock_annotations(review.campaign_id, draw.scan_ids):
        _send_to_senior(actor, review, draw, annotation)
    return draw


def _send_to_senior(
    actor: User | None, review: BatchReview, draw: SpotCheckDraw, annotation: Annotation
) -> SpotCheck:
    annotation_transition(
        annotation, AnnotationState.SPOT_CHECK, actor=actor, revision=annotation.head, draw=draw.number
    )
    assert annotation.head is not None  # a checked annotation has a head revision
    senior = _pick_senior(annotation)
    spot_check = SpotCheck.objects.create(
        review=review, draw=draw, annotation=annotation, revision=annotation.head, senior=senior
    )
    audit_record(
        actor=actor,
        action="spot_check_assign",
        obj=spot_check,
        campaign=annotation.campaign_id,
        scan=annotation.scan_id,
        revision_id=annotation.head_id,
        to_state=Verdict.PENDING,
        senior=senior.username if senior else "",
        draw=draw.number,
    )
    return spot_check


def _pick_senior(annotation: Annotation) -> User | None:
    """The senior who read this scan before, if still eligible; else the least-loaded eligible one.
    None when nobody may read it: a data manager then assigns one (spot_check_reassign)."""
    excluded = rules.makers_of(annotation) | rules.checkers_of(annotation)
    previous = (
        SpotCheck.objects.filter(annotation=annotation, senior__isnull=False)
        .order_by("-pk")
        .values_list("senior_id", flat=True)
        .first()
    )
    candidates = rules.seniors_by_load(annotation.campaign, exclude=excluded)
    for senior in candidates:
        if senior.pk == previous:
            return senior
    return candidates[0] if candidates else None


def on_annotation_checked(actor: User | None, review: BatchReview, annotation: Annotation) -> None:
    """Steps 1–2 passed a scan of this batch. Caller holds the review and annotation locks."""
    if review.state == BatchReviewState.ANNOTATING:
        population = batch_scan_ids(review.batch)
        checked = Annotation.objects.filter(
            campaign_id=review.campaign_id, scan_id__in=population, state=AnnotationState.CHECKED
        ).count()
        if checked == len(population):
            spot_check_sample(actor=actor, review=review)
    elif review.state == BatchReviewState.SPOT_CHECK:
        draw = review.current_draw()
        if draw is not None and annotation.scan_id in draw.scan_ids:
            # A scan the senior failed, revised and rechecked: back to the senior.
            _send_to_senior(actor, review, draw, annotation)


# --- the senior's verdict -------------------------------------------------------------------


def spot_check_record(
    *,
    actor: User,
    spot_check: SpotCheck,
    verdict: str,
    findings: list | None = None,
    time_spent_s: float = 0.0,
) -> SpotCheck:
    verdict = rules.clean_verdict(verdict)
    cleaned = rules.clean_findings(findings, spot_check.annotation.scan, verdict)
    seconds = rules.clean_time_spent(time_spent_s)
    with transaction.atomic():
        review = locks.lock_review(spot_check.review_id)
        annotation = locks.lock_annotation(spot_check.annotation_id)
        sc = SpotCheck.objects.select_for_update(of=("self",)).get(pk=spot_check.pk)
        _require_senior_of(actor, sc, annotation)
        if sc.verdict != Verdict.PENDING:
            raise Conflict("this spot check already has a verdict", code="already_decided")
        if (
            review.state != BatchReviewState.SPOT_CHECK
            or annotation.state != AnnotationState.SPOT_CHECK
            or annotation.head_id != sc.revision_id
        ):
            raise stale_revision_conflict(
                annotation,
                sc.revision_id,
                "this spot check is no longer current; reload your queue",
                code="stale_spot_check",
            )
        sc.verdict, sc.findings, sc.time_spent_s, sc.decided_at = verdict, cleaned, seconds, timezone.now()
        sc.save(update_fields=["verdict", "findings", "time_spent_s", "decided_at"])
        audit_record(
            actor=actor,
            action="spot_check_record",
            obj=sc,
            campaign=annotation.campaign_id,
            scan=annotation.scan_id,
            revision_id=sc.revision_id,
            from_state=Verdict.PENDING,
            to_state=verdict,
            findings=len(cleaned),
        )
        if verdict == Verdict.FAIL:
            # Back to step 2: the annotator revises, the same two checkers recheck, then the senior again.
            annotation_transition(
                annotation,
                AnnotationState.NEEDS_REVISION,
                actor=actor,
                revision=annotation.head,
                spot_check=sc.pk,
            )
        elif _sample_all_passed(review):
            _approve(actor, review)
    return sc


def _require_senior_of(actor: User, sc: SpotCheck, annotation: Annotation) -> None:
    if not has_campaign_role(actor, annotation.campaign, Role.SENIOR):
        raise Forbidden("only a senior radiologist of this campaign records spot checks", code="wrong_role")
    if sc.senior_id != actor.pk:
        raise Forbidden("this spot check is assigned to another senior", code="not_your_spot_check")
    if actor.pk in rules.makers_of(annotation) | rules.checkers_of(annotation):  # defence in depth
        raise Forbidden("no one spot-checks a scan they annotated or checked", code="own_work")


def _sample_all_passed(review: BatchReview) -> bool:
    draw = review.current_draw()
    if draw is None:
        return False
    sample = draw.scan_ids
    annotations = Annotation.objects.filter(campaign_id=review.campaign_id, scan_id__in=sample)
    if annotations.exclude(state=AnnotationState.SPOT_CHECK).exists() or annotations.count() != len(sample):
        return False
    latest: dict[int, SpotCheck] = {}
    for sc in SpotCheck.objects.filter(draw=draw).order_by("pk"):
        latest[sc.annotation_id] = sc
    return all(
        a.pk in latest and latest[a.pk].verdict == Verdict.PASS and latest[a.pk].revision_id == a.head_id
        for a in annotations
    )


def _approve(actor: User, review: BatchReview) -> None:
    """All sampled scans passed: every annotation of the batch is curated at its head revision."""
    draw = review.current_draw()
    assert draw is not None
    now = timezone.now()
    population = batch_scan_ids(review.batch)
    annotations = locks.lock_annotations(review.campaign_id, population)
    if len(annotations) != len(population):  # never approve a scan nobody annotated
        raise Conflict("some scans of this batch have no annotation", code="incomplete_batch")
    for annotation in annotations:
        annotation_transition(
            annotation, AnnotationState.CURATED, actor=actor, revision=annotation.head, batch=review.batch_id
        )
        assert annotation.head_id is not None  # an annotation in spot check or checked has a head
        CuratedRevision.objects.create(
            review=review,
            draw=draw,
            annotation=annotation,
            revision_id=annotation.head_id,
            curated_at=now,
            approved_by=actor,
        )
    batch_review_transition(review, BatchReviewState.APPROVED, actor=actor, curated=len(annotations))
    campaign_id = review.campaign_id
    transaction.on_commit(lambda: celery_app.send_task(RETRAIN_TASK, args=[campaign_id], queue="train"))


# --- people and reopening -------------------------------------------------------------------


def spot_check_reassign(*, actor: User, spot_check: SpotCheck, senior: User) -> SpotCheck:
    require_data_manager(actor, spot_check.annotation.campaign, "reassign spot checks")
    with transaction.atomic():
        annotation = locks.lock_annotation(spot_check.annotation_id)
        sc = SpotCheck.objects.select_for_update(of=("self",)).select_related("senior").get(pk=spot_check.pk)
        if sc.verdict != Verdict.PENDING:
            raise Conflict(
                "this spot check already has a verdict; only pending ones move", code="already_decided"
            )
        rules.require_senior_eligible(senior, annotation)
        previous = sc.senior.username if sc.senior else ""
        sc.senior = senior
        sc.save(update_fields=["senior"])
        audit_record(
            actor=actor,
            action="spot_check_reassign",
            obj=sc,
            campaign=annotation.campaign_id,
            scan=annotation.scan_id,
            revision_id=sc.revision_id,
            from_state=previous,
            to_state=senior.username,
        )
    return sc


def batch_reopen(*, actor: User, batch: Batch, reason: str, scan_ids: list[int] | None = None) -> BatchReview:
    """A data manager reopens an approved batch: its curated revisions are withdrawn and the batch
    goes back to the senior with a fresh draw, plus any scans the data manager names."""
    require_data_manager(actor, batch.campaign, "reopen a batch")
    reason = (reason or "").strip()
    if not reason:
        raise DomainError(
            "say why the batch is reopened; the reason goes into the audit trail", code="reason_required"
        )
    named = sorted(set(scan_ids or []))
    unknown = set(named) - set(batch_scan_ids(batch))
    if unknown:
        raise DomainError(f"scans {sorted(unknown)} are not in this batch", code="not_in_batch")
    if batch.status != Batch.Status.OPEN:
        raise Conflict("this batch is closed; its scans cannot be revised in it", code="batch_closed")
    review = BatchReview.objects.filter(batch=batch).first()
    if review is None:
        raise Conflict("only an approved batch can be reopened", code="not_approved")
    with transaction.atomic():
        review = locks.lock_review(review.pk)
        if review.state != BatchReviewState.APPROVED:
            raise Conflict("only an approved batch can be reopened", code="not_approved")
        for annotation in locks.lock_annotations(review.campaign_id, batch_scan_ids(batch)):
            annotation_transition(
                annotation, AnnotationState.CHECKED, actor=actor, revision=annotation.head, reason=reason
            )
        CuratedRevision.objects.filter(review=review, withdrawn_at__isnull=True).update(
            withdrawn_at=timezone.now(), withdrawn_reason=reason
        )
        audit_record(
            actor=actor,
            action="batch_reopen",
            obj=review,
            campaign=review.campaign_id,
            from_state=BatchReviewState.APPROVED,
            to_state=BatchReviewState.SPOT_CHECK,
            batch=batch.pk,
            reason=reason,
            scan_ids=named,
        )
        spot_check_sample(actor=actor, review=review, added_scan_ids=named, reason=reason)
    return review

"""QC reads, scoped to the requesting user.

Blindness (qc.permissions) is enforced here as well as in the API: a checker's querysets never
contain the other checker's check of a round until both verdicts of that round are in,
whatever other roles (data manager, senior) the checker also holds.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, cast

from django.db.models import Exists, OuterRef, Q, QuerySet

from annotation.models import Annotation, AnnotationState
from core.models import Batch, BatchItem, Campaign, Scan, User
from core.permissions import campaigns_managed_by
from qc import permissions
from qc.models import (
    BatchReview,
    BatchReviewState,
    Check,
    CheckerPair,
    CuratedRevision,
    Slot,
    SpotCheck,
    Verdict,
)

SENIOR_LABEL = "senior"


def scans_under_review_by(user: User) -> QuerySet[Scan]:
    """Scans a checker or senior was assigned to review (read access for the viewer and WADO-RS)."""
    if not user.is_authenticated:
        return Scan.objects.none()
    checked = Check.objects.filter(checker=user).values("annotation__scan_id")
    spot_checked = SpotCheck.objects.filter(senior=user).values("annotation__scan_id")
    return Scan.objects.filter(Q(pk__in=checked) | Q(pk__in=spot_checked))


# --- checks -----------------------------------------------------------------------------------


def checks_visible_to(user: User) -> QuerySet[Check]:
    """Own checks; a data manager's campaigns' checks; others' checks of a closed round (both
    verdicts in) for the other checker of that round or a senior spot-checking the scan. Whoever
    holds a check of an open round sees nothing else of that round, whatever their other roles."""
    if not user.is_authenticated:
        return Check.objects.none()
    senior_of = Q(Exists(SpotCheck.objects.filter(annotation=OuterRef("annotation"), senior=user)))
    managed = Q(annotation__campaign__in=campaigns_managed_by(user).values("pk"))
    closed = ~permissions.round_open()
    return Check.objects.filter(
        Q(checker=user)
        | (managed & ~permissions.blind_to_round(user))
        | ((permissions.holds_check_in_round(user) | senior_of) & closed)
    )


def check_for_user(user: User, check_id: int) -> Check:
    """Fetch and authorise together; Check.DoesNotExist (→ 404) when out of scope."""
    return (
        checks_visible_to(user)
        .select_related("annotation__scan", "annotation__campaign", "revision", "checker")
        .get(pk=check_id)
    )


def checker_queue(user: User) -> QuerySet[Check]:
    """The checker's pending checks, oldest first."""
    return (
        Check.objects.filter(checker=user, verdict=Verdict.PENDING)
        .select_related("annotation__scan", "annotation__campaign", "revision")
        .order_by("assigned_at", "pk")
    )


def _check_out(check: Check) -> dict:
    return {
        "slot": check.slot,
        "label": Slot(check.slot).label,
        "verdict": check.verdict,
        "findings": check.findings,
        "decided_at": check.decided_at,
    }


def check_detail(user: User, check: Check) -> dict:
    """A check as its viewer may see it: the other check of the round only once both are in,
    and earlier (closed) rounds of the annotation as history."""
    round_checks = list(Check.objects.filter(annotation_id=check.annotation_id, round=check.round))
    closed = permissions.round_closed(round_checks)
    other = next((c for c in round_checks if c.pk != check.pk), None)
    history: dict[int, dict[str, Any]] = {}
    for c in Check.objects.filter(annotation_id=check.annotation_id, round__lt=check.round).order_by(
        "round", "slot"
    ):
        entry = history.setdefault(c.round, {"round": c.round, "revision_id": c.revision_id, "checks": []})
        entry["checks"].append(_check_out(c))
    annotation = check.annotation
    return {
        "id": check.pk,
        "campaign": {"id": annotation.campaign_id, "slug": annotation.campaign.slug},
        "scan_id": annotation.scan_id,
        "annotation_id": annotation.pk,
        "annotation_state": annotation.state,
        "revision": {
            "id": check.revision_id,
            "number": check.revision.number,
            "scan_labels": check.revision.scan_labels,
            "voxel_counts": check.revision.voxel_counts,
        },
        "round": check.round,
        "slot": check.slot,
        "mine": check.checker_id == user.pk,
        "verdict": check.verdict,
        "findings": check.findings,
        "assigned_at": check.assigned_at,
        "decided_at": check.decided_at,
        "time_spent_s": check.time_spent_s,
        # Blind until both verdicts are in (QC step 1).
        "other": _check_out(other) if closed and other is not None else None,
        "history": list(history.values()),
    }


# --- spot checks ---------------------------------------------------------------------------------


def spot_checks_visible_to(user: User) -> QuerySet[SpotCheck]:
    if not user.is_authenticated:
        return SpotCheck.objects.none()
    managed = Q(annotation__campaign__in=campaigns_managed_by(user).values("pk"))
    return SpotCheck.objects.filter(Q(senior=user) | managed)


def spot_check_for_user(user: User, spot_check_id: int) -> SpotCheck:
    return (
        spot_checks_visible_to(user)
        .select_related("annotation__scan", "annotation__campaign", "revision", "review__batch", "draw")
        .get(pk=spot_check_id)
    )


def senior_queue(user: User) -> QuerySet[SpotCheck]:
    return (
        SpotCheck.objects.filter(senior=user, verdict=Verdict.PENDING)
        .select_related("annotation__scan", "annotation__campaign", "revision", "review__batch")
        .order_by("assigned_at", "pk")
    )


def spot_check_detail(spot_check: SpotCheck) -> dict:
    annotation = spot_check.annotation
    rounds: dict[int, dict] = {}
    for c in (
        Check.objects.filter(annotation=annotation).exclude(verdict=Verdict.PENDING).order_by("round", "slot")
    ):
        entry = rounds.setdefault(c.round, {"round": c.round, "revision_id": c.revision_id, "checks": []})
        entry["checks"].append(_check_out(c))
    return {
        "id": spot_check.pk,
        "campaign": {"id": annotation.campaign_id, "slug": annotation.campaign.slug},
        "batch": {"id": spot_check.review.batch_id, "name": spot_check.review.batch.name},
        "scan_id": annotation.scan_id,
        "annotation_id": annotation.pk,
        "annotation_state": annotation.state,
        "revision": {
            "id": spot_check.revision_id,
            "number": spot_check.revision.number,
            "scan_labels": spot_check.revision.scan_labels,
        },
        "draw": spot_check.draw.number,
        "verdict": spot_check.verdict,
        "findings": spot_check.findings,
        "assigned_at": spot_check.assigned_at,
        "decided_at": spot_check.decided_at,
        "time_spent_s": spot_check.time_spent_s,
        "check_rounds": list(rounds.values()),
    }


# --- the annotator's findings ------------------------------------------------------------------


def annotator_findings(annotation: Annotation) -> dict:
    """The findings of the last failed review of the annotation, without reviewer identities:
    both checks of the last round that failed ("checker A" / "checker B"), or the senior's
    failed spot check, whichever came last."""
    closed_rounds = Check.objects.filter(annotation=annotation).exclude(
        round__in=Check.objects.filter(annotation=annotation, verdict=Verdict.PENDING).values("round")
    )
    failed_round = (
        closed_rounds.filter(verdict=Verdict.FAIL).order_by("-round").values_list("round", flat=True).first()
    )
    round_checks = list(closed_rounds.filter(round=failed_round).order_by("slot")) if failed_round else []
    round_time = max((c.decided_at for c in round_checks if c.decided_at is not None), default=None)
    spot = (
        SpotCheck.objects.filter(annotation=annotation, verdict=Verdict.FAIL).order_by("-decided_at").first()
    )
    out: dict = {
        "annotation_id": annotation.pk,
        "state": annotation.state,
        "source": None,
        "round": None,
        "revision_id": None,
        "reviews": [],
    }
    if spot is not None and (
        round_time is None or (spot.decided_at is not None and spot.decided_at > round_time)
    ):
        out.update(
            source="spot_check",
            revision_id=spot.revision_id,
            reviews=[
                {
                    "reviewer": SENIOR_LABEL,
                    "verdict": spot.verdict,
                    "findings": spot.findings,
                    "decided_at": spot.decided_at,
                }
            ],
        )
    elif round_checks:
        out.update(
            source="checks",
            round=failed_round,
            revision_id=round_checks[0].revision_id,
            reviews=[
                {
                    "reviewer": Slot(c.slot).label,
                    "verdict": c.verdict,
                    "findings": c.findings,
                    "decided_at": c.decided_at,
                }
                for c in round_checks
            ],
        )
    return out


# --- the data manager's batch board -----------------------------------------------------------


def _holder(state: str, annotator: str, pending_checkers: list[str], senior: str | None) -> dict:
    if state in (AnnotationState.NOT_STARTED, AnnotationState.IN_PROGRESS, AnnotationState.NEEDS_REVISION):
        return {"role": "annotator", "users": [annotator] if annotator else []}
    if state == AnnotationState.SUBMITTED:
        return {"role": "checker", "users": pending_checkers}
    if state == AnnotationState.SPOT_CHECK:
        return {"role": "senior", "users": [senior] if senior else []}
    return {"role": None, "users": []}  # checked (waiting for the batch) or curated


def batch_board(viewer: User, batch: Batch) -> dict:
    """Each scan's state and who holds it. A viewer who is a checker of an open round sees no
    verdict of that round (blindness holds for every role)."""
    review = BatchReview.objects.filter(batch=batch).first()
    draw = review.current_draw() if review else None
    # Plain dicts: each item gains the review's keys below.
    items = cast(
        list[dict[str, Any]],
        list(BatchItem.objects.filter(batch=batch).order_by("position").values("scan_id", "position")),
    )
    annotations = {
        a.scan_id: a
        for a in Annotation.objects.filter(
            campaign_id=batch.campaign_id, scan_id__in=[i["scan_id"] for i in items]
        )
    }
    ann_ids = [a.pk for a in annotations.values()]
    by_annotation: dict[int, list[Check]] = defaultdict(list)
    for c in (
        Check.objects.filter(annotation_id__in=ann_ids).select_related("checker").order_by("round", "slot")
    ):
        by_annotation[c.annotation_id].append(c)
    latest_round = {aid: [c for c in cs if c.round == cs[-1].round] for aid, cs in by_annotation.items()}
    spot: dict[int, SpotCheck] = {}
    for s in SpotCheck.objects.filter(annotation_id__in=ann_ids).select_related("senior").order_by("pk"):
        spot[s.annotation_id] = s
    pairs = {
        p.annotation_id: p
        for p in CheckerPair.objects.filter(annotation_id__in=ann_ids).select_related(
            "checker_a", "checker_b"
        )
    }
    annotator = batch.annotator.username if batch.annotator else ""
    for item in items:
        a = annotations.get(item["scan_id"])
        checks = latest_round.get(a.pk, []) if a else []
        blind = permissions.is_blind(viewer, checks)
        sc = spot.get(a.pk) if a else None
        state = a.state if a else AnnotationState.NOT_STARTED
        item.update(
            annotation_id=a.pk if a else None,
            state=state,
            head_revision_id=a.head_id if a else None,
            round=checks[0].round if checks else 0,
            checkers=[p.checker_a.username, p.checker_b.username]
            if (p := pairs.get(a.pk if a else -1))
            else [],
            checks=[
                {
                    "slot": c.slot,
                    "checker": c.checker.username,
                    "verdict": (
                        "hidden"
                        if blind and c.checker_id != viewer.pk and c.verdict != Verdict.PENDING
                        else c.verdict
                    ),
                }
                for c in checks
            ],
            sampled=bool(draw and item["scan_id"] in draw.scan_ids),
            spot_check=(
                {"id": sc.pk, "senior": sc.senior.username if sc.senior else None, "verdict": sc.verdict}
                if sc
                else None
            ),
            holder=_holder(
                state,
                annotator,
                [c.checker.username for c in checks if c.verdict == Verdict.PENDING],
                sc.senior.username if sc and sc.senior and sc.verdict == Verdict.PENDING else None,
            ),
        )
    return {
        "batch": {
            "id": batch.pk,
            "name": batch.name,
            "status": batch.status,
            "campaign_id": batch.campaign_id,
            "annotator": annotator,
        },
        "review": {
            "state": review.state if review else BatchReviewState.ANNOTATING,
            "approved_at": review.approved_at if review else None,
            "draw": None
            if draw is None
            else {
                "number": draw.number,
                "seed": str(draw.seed),
                "share": draw.share,
                "sample_size": draw.sample_size,
                "sampled_scan_ids": draw.sampled_scan_ids,
                "added_scan_ids": draw.added_scan_ids,
            },
        },
        "items": items,
    }


# --- for exports -----------------------------------------------------------------------------


def curated_revisions(campaign: Campaign | int | None = None) -> QuerySet[CuratedRevision]:
    """The curated final revisions of approved batches (what dataset exports read)."""
    qs = CuratedRevision.objects.filter(withdrawn_at__isnull=True, review__state=BatchReviewState.APPROVED)
    if campaign is not None:
        qs = qs.filter(review__campaign=campaign)
    return qs.select_related("revision", "annotation__scan", "review__batch")

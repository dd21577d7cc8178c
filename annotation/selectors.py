"""Reads of annotations: the annotator's worklist, batch progress and readable revisions."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

from annotation.models import Annotation, AnnotationState, Revision
from annotation.permissions import may_read_scan, revisions_readable_by
from core.api_errors import NotFound
from core.models import Batch, BatchItem, User

# What the worklist shows per scan: the annotation's state, or "not started" before any save.
DONE_STATES = {AnnotationState.CHECKED, AnnotationState.SPOT_CHECK, AnnotationState.CURATED}


def batch_items_with_state(batch: Batch) -> list[dict]:
    # Plain dicts: each item gains its "state" below.
    items = cast(
        list[dict[str, Any]],
        list(BatchItem.objects.filter(batch=batch).order_by("position").values("scan_id", "position")),
    )
    states = dict(
        Annotation.objects.filter(
            campaign_id=batch.campaign_id, scan_id__in=[i["scan_id"] for i in items]
        ).values_list("scan_id", "state")
    )
    for item in items:
        item["state"] = states.get(item["scan_id"], AnnotationState.NOT_STARTED)
    return items


def batch_progress(items: list[dict]) -> dict:
    counts = Counter(i["state"] for i in items)
    return {
        "total": len(items),
        "not_started": counts[AnnotationState.NOT_STARTED],
        "in_progress": counts[AnnotationState.IN_PROGRESS] + counts[AnnotationState.NEEDS_REVISION],
        "needs_revision": counts[AnnotationState.NEEDS_REVISION],
        "submitted": counts[AnnotationState.SUBMITTED],
        "done": sum(counts[s] for s in DONE_STATES),
    }


def worklist_for(user: User) -> list[dict]:
    out = []
    batches = Batch.objects.filter(annotator=user, status=Batch.Status.OPEN).select_related("campaign")
    for batch in batches.order_by("assigned_at", "pk"):
        items = batch_items_with_state(batch)
        if items and all(i["state"] == AnnotationState.CURATED for i in items):
            continue  # approved: nothing left to do for the annotator
        out.append(
            {
                "id": batch.pk,
                "name": batch.name,
                "status": batch.status,
                "campaign": {
                    "id": batch.campaign_id,
                    "slug": batch.campaign.slug,
                    "name": batch.campaign.name,
                },
                "progress": batch_progress(items),
                "items": items,
            }
        )
    return out


def revisions_for_user(user: User, campaign_id: int, scan_id: int) -> list[Revision]:
    """The revisions of a scan's annotation the user may read, oldest first (annotation.permissions).
    NotFound (404) when there are none and the scan itself is out of the user's reach."""
    revisions = list(
        revisions_readable_by(user, campaign_id, scan_id).select_related("author").order_by("number")
    )
    if not revisions and not may_read_scan(user, campaign_id, scan_id):
        raise NotFound("no such scan among yours")
    return revisions

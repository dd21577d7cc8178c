"""Row locks of the QC services, always taken in one order to rule out deadlocks:

    batch review → annotation(s) by pk → checks / spot checks by pk

`select_for_update` is a no-op on SQLite, where IMMEDIATE transactions serialise writers
(settings); on PostgreSQL these are real row locks. Status is always re-read inside the lock.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import IntegrityError, transaction

from annotation.models import Annotation
from core.models import Batch
from qc.models import BatchReview


def review_for(batch: Batch) -> BatchReview:
    """The batch's review row, created on first use. Call before the main transaction, so
    concurrent first users meet on the unique index rather than deadlock on it."""
    try:
        with transaction.atomic():
            review, _ = BatchReview.objects.get_or_create(
                batch=batch, defaults={"campaign_id": batch.campaign_id}
            )
    except IntegrityError:
        review = BatchReview.objects.get(batch=batch)
    return review


def lock_review(review_id: int) -> BatchReview:
    return (
        BatchReview.objects.select_for_update(of=("self",))
        .select_related("batch", "campaign")
        .get(pk=review_id)
    )


def lock_annotation(annotation_id: int) -> Annotation:
    return (
        Annotation.objects.select_for_update(of=("self",))
        .select_related("head", "scan", "campaign")
        .get(pk=annotation_id)
    )


def lock_annotations(campaign_id: int, scan_ids: Iterable[int]) -> list[Annotation]:
    return list(
        Annotation.objects.select_for_update(of=("self",))
        .filter(campaign_id=campaign_id, scan_id__in=list(scan_ids))
        .select_related("head", "scan", "campaign")
        .order_by("pk")
    )

"""Building, assigning, reassigning and closing batches.

The database guarantees a scan is in at most one open batch of a campaign (a partial
unique index on BatchItem). Building a batch picks candidates under row locks, and a
concurrent builder that still collides gets a clean 409 instead of a double assignment.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from core.api_errors import Conflict, DomainError, Forbidden
from core.models import Batch, BatchItem, Campaign, CampaignMember, CampaignScan, Role, User
from core.permissions import open_item_annotated_by, require_data_manager
from core.services.audit import audit_record
from platform_core.celery import app as celery_app

# Task of a higher layer, sent by name so the core never imports it (DESIGN: import direction).
PRESEGMENT_BATCH_TASK = "modelassist.tasks.presegment_batch"


@dataclass
class BatchFilters:
    institution_id: int | None = None
    study_date_from: dt.date | None = None
    study_date_to: dt.date | None = None
    tags: list[str] | None = None


def _require_manager(actor: User, campaign: Campaign) -> None:
    require_data_manager(actor, campaign, "build and assign batches", code=Forbidden.code)


def unbatched_scans(campaign: Campaign, filters: BatchFilters | None = None) -> QuerySet[CampaignScan]:
    """Scans of the campaign in no open batch, oldest first. Curated scans are not re-batched."""
    qs = CampaignScan.objects.filter(campaign=campaign).exclude(
        scan__batch_items__campaign=campaign, scan__batch_items__is_open=True
    )
    qs = qs.exclude(scan__annotations__campaign=campaign, scan__annotations__state="curated")
    if filters:
        if filters.institution_id:
            qs = qs.filter(scan__study__institution_id=filters.institution_id)
        if filters.study_date_from:
            qs = qs.filter(scan__study__study_date__gte=filters.study_date_from)
        if filters.study_date_to:
            qs = qs.filter(scan__study__study_date__lte=filters.study_date_to)
        for tag in filters.tags or []:
            qs = qs.filter(scan__study__tags__contains=tag) if connection.vendor == "postgresql" else qs
    return qs.order_by("pk")


def batch_build(
    *,
    actor: User,
    campaign: Campaign,
    size: int | None = None,
    scan_ids: list[int] | None = None,
    filters: BatchFilters | None = None,
    annotator: User | None = None,
    auto_assign: bool = False,
    name: str = "",
) -> Batch:
    _require_manager(actor, campaign)
    size = min(size or campaign.batch_size, campaign.batch_size)
    try:
        with transaction.atomic():
            candidates = unbatched_scans(campaign, filters)
            if scan_ids is not None:
                candidates = candidates.filter(scan_id__in=scan_ids)
            # Lock the candidate rows; a concurrent builder skips them instead of waiting and
            # then colliding (PostgreSQL). SQLite serialises writers with IMMEDIATE transactions.
            if connection.features.has_select_for_update_skip_locked:
                candidates = candidates.select_for_update(skip_locked=True, of=("self",))
            chosen = list(candidates.values_list("scan_id", flat=True)[:size])
            if scan_ids is not None and len(chosen) != len(set(scan_ids)):
                missing = sorted(set(scan_ids) - set(chosen))
                raise Conflict(
                    f"scans {missing} are not in this campaign or already in an open batch", code="scan_taken"
                )
            if not chosen:
                raise DomainError("no unbatched scans left in this campaign", code="nothing_to_batch")
            batch = Batch.objects.create(
                campaign=campaign,
                name=name or f"{campaign.slug}-{Batch.objects.filter(campaign=campaign).count() + 1:03d}",
                created_by=actor,
            )
            BatchItem.objects.bulk_create(
                BatchItem(batch=batch, scan_id=sid, campaign=campaign, position=i)
                for i, sid in enumerate(chosen)
            )
            audit_record(
                actor=actor,
                action="batch_build",
                obj=batch,
                campaign=campaign,
                to_state="open",
                scans=len(chosen),
            )
            if annotator is None and auto_assign:
                annotator = annotator_least_loaded(campaign)
            if annotator is not None:
                _assign(actor, batch, annotator)
    except IntegrityError as exc:
        # The unique index caught a scan another request batched at the same instant.
        raise Conflict(
            "another request batched some of these scans at the same time; try again", code="scan_taken"
        ) from exc
    return batch


def annotator_least_loaded(campaign: Campaign) -> User:
    annotators = (
        User.objects.filter(
            campaign_roles__campaign=campaign, campaign_roles__role=Role.ANNOTATOR, is_active=True
        )
        .annotate(
            load=Count(
                "batches__items",
                filter=Q(
                    batches__campaign=campaign,
                    batches__status=Batch.Status.OPEN,
                    batches__items__is_open=True,
                ),
            )
        )
        .order_by("load", "pk")
    )
    first = annotators.first()
    if first is None:
        raise DomainError("this campaign has no annotators; add one before assigning", code="no_annotator")
    return first


def batch_assign(*, actor: User, batch: Batch, annotator: User) -> Batch:
    """Assign or reassign. Reassigning moves the unsubmitted work; revisions keep their authors."""
    _require_manager(actor, batch.campaign)
    with transaction.atomic():
        locked = Batch.objects.select_for_update().get(pk=batch.pk)
        if locked.status != Batch.Status.OPEN:
            raise Conflict("this batch is closed; build a new batch instead", code="batch_closed")
        _assign(actor, locked, annotator)
    return locked


def _assign(actor: User, batch: Batch, annotator: User) -> None:
    if not CampaignMember.objects.filter(
        campaign=batch.campaign, user=annotator, role=Role.ANNOTATOR
    ).exists():
        raise DomainError(f"{annotator.username} is not an annotator of this campaign", code="not_annotator")
    previous = batch.annotator
    first_assignment = batch.annotator_id is None
    batch.annotator = annotator
    batch.assigned_at = timezone.now()
    batch.save(update_fields=["annotator", "assigned_at"])
    audit_record(
        actor=actor,
        action="batch_assign",
        obj=batch,
        campaign=batch.campaign,
        from_state=previous.username if previous else "",
        to_state=annotator.username,
    )
    if first_assignment:
        batch_id = batch.pk
        transaction.on_commit(
            lambda: celery_app.send_task(PRESEGMENT_BATCH_TASK, args=[batch_id], queue="assist")
        )


def batch_close(*, actor: User, batch: Batch) -> Batch:
    _require_manager(actor, batch.campaign)
    with transaction.atomic():
        locked = Batch.objects.select_for_update().get(pk=batch.pk)
        if locked.status == Batch.Status.CLOSED:
            return locked
        locked.status = Batch.Status.CLOSED
        locked.save(update_fields=["status"])
        BatchItem.objects.filter(batch=locked).update(is_open=False)
        audit_record(
            actor=actor,
            action="batch_close",
            obj=locked,
            campaign=locked.campaign,
            from_state="open",
            to_state="closed",
        )
    return locked


def open_batch_of(user: User, campaign: Campaign, scan_id: int) -> Batch | None:
    """The open batch of this campaign holding the scan, if the user is its annotator."""
    item = open_item_annotated_by(user, campaign, scan_id)
    return item.batch if item else None

"""Pre-segmentation (DESIGN step 3): the campaign's active model, or the classical baseline,
labels each scan of a newly assigned batch as revision 0.

Each scan is its own task and its own row (PresegScan): a failed or slow scan is recorded
and never stops the others. Everything here is safe to run twice: a scan is claimed by a
compare-and-swap on its row, and `model_revision_save` refuses when any revision exists, so
people's work is never overwritten, whichever model is active by then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import timedelta

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.models import Annotation
from annotation.services import model_revision_save
from core.jobs.services import job_claim, job_fail, job_finish, job_requeue
from core.label_schema import class_values
from core.models import Batch, BatchItem, Campaign, Scan, User
from core.services.audit import audit_record
from modelassist.baseline import baseline_presegment
from modelassist.lazy import network
from modelassist.models import BASELINE_LABEL, ModelVersion, PresegRun, PresegScan, PresegStatus
from modelassist.selectors import active_model_version, require_manager, scan_volume
from modelassist.services import model_versions, quantification
from platform_core.celery import task_named

log = logging.getLogger(__name__)

# A row still "running" after this long lost its worker (see NOTES-backend: redelivery); a
# re-run of the batch queues it again. Longer than the scan task's hard time limit.
STALE_RUNNING = timedelta(minutes=15)


def preseg_queue_batch(batch_id: int, *, actor: User | None = None) -> list[int]:
    """Create or refresh the batch's run; return the scan ids whose task must be (re)sent:
    new, queued (maybe never sent) and failed scans, and running ones whose worker was lost."""
    batch = Batch.objects.select_related("campaign").get(pk=batch_id)
    if actor is not None:
        require_manager(actor, batch.campaign, "re-run pre-segmentation")
    now = timezone.now()
    scan_ids = list(
        BatchItem.objects.filter(batch=batch).order_by("position").values_list("scan_id", flat=True)
    )
    try:
        with transaction.atomic():
            run, _ = PresegRun.objects.select_for_update().get_or_create(
                batch=batch, defaults={"campaign": batch.campaign}
            )
            existing = {r.scan_id: r for r in PresegScan.objects.select_for_update().filter(run=run)}
            to_send = []
            for scan_id in scan_ids:
                row = existing.get(scan_id)
                if row is None:
                    PresegScan.objects.create(run=run, scan_id=scan_id, queued_at=now)
                    to_send.append(scan_id)
                elif _requeue(row, now):
                    to_send.append(scan_id)
            PresegRun.objects.filter(pk=run.pk).update(attempts=run.attempts + 1)
            audit_record(
                actor=actor,
                actor_label="" if actor else "system",
                action="preseg_queue",
                obj=run,
                campaign=batch.campaign_id,
                to_state="queued",
                batch=batch.pk,
                scans=to_send,
            )
    except IntegrityError:
        # A concurrent call created the run first; that call queues the scans.
        return []
    return to_send


def preseg_rerun(*, actor: User, batch: Batch) -> None:
    """A data manager re-runs a batch's pre-segmentation: failed and lost scans are retried,
    finished ones stay as they are."""
    require_manager(actor, batch.campaign, "re-run pre-segmentation")
    batch_id = batch.pk
    # Found by name: the tasks module imports the services, so the services never import it.
    transaction.on_commit(lambda: task_named("modelassist.tasks.presegment_batch").delay(batch_id))


def _requeue(row: PresegScan, now) -> bool:
    """Queued (maybe never sent) scans are sent again; failed and lost ones are re-queued."""
    if row.status == PresegStatus.QUEUED:
        return True
    return job_requeue(
        row,
        from_states=[PresegStatus.FAILED, PresegStatus.RUNNING],
        stale_after=STALE_RUNNING,
        queued_at=now,
        error="",
    )


def presegment_scan_run(
    campaign_id: int, scan_id: int, batch_id: int | None = None, *, worker: str = ""
) -> PresegScan:
    """Pre-segment one scan and record the outcome on its row. Never raises for a scan-level
    failure: the error text and the seconds spent go to the row instead."""
    row = _row_for(campaign_id, scan_id, batch_id)
    if not job_claim(row, worker=worker, error=""):
        row.refresh_from_db()
        return row  # done, skipped, or another worker has it: running twice changes nothing
    started = time.perf_counter()
    try:
        status, fields = _presegment(row, Campaign.objects.get(pk=campaign_id), Scan.objects.get(pk=scan_id))
    except SoftTimeLimitExceeded:
        status, fields = PresegStatus.FAILED, {"error": "stopped: took longer than the task's time limit"}
    except Exception as exc:  # recorded for the data manager; the other scans carry on
        log.exception("pre-segmentation of scan %s failed", scan_id)
        status, fields = PresegStatus.FAILED, {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    seconds = round(time.perf_counter() - started, 3)
    if status == PresegStatus.FAILED:
        job_fail(
            row,
            fields.pop("error"),
            from_states=[PresegStatus.RUNNING],
            audit={"scan": scan_id, "campaign": campaign_id},
            seconds=seconds,
            **fields,
        )
    else:
        job_finish(row, status, seconds=seconds, **fields)
    row.refresh_from_db()
    return row


def _row_for(campaign_id: int, scan_id: int, batch_id: int | None) -> PresegScan:
    """The scan's row in the batch's run; a task sent without a run (by hand) makes one."""
    if batch_id is None:
        batch_id = (
            BatchItem.objects.filter(campaign_id=campaign_id, scan_id=scan_id)
            .order_by("-is_open", "-pk")
            .values_list("batch_id", flat=True)
            .first()
        )
        if batch_id is None:
            raise ValueError(f"scan {scan_id} is in no batch of campaign {campaign_id}")
    run, _ = PresegRun.objects.get_or_create(batch_id=batch_id, defaults={"campaign_id": campaign_id})
    row, _ = PresegScan.objects.get_or_create(
        run=run, scan_id=scan_id, defaults={"queued_at": timezone.now()}
    )
    return row


def _presegment(row: PresegScan, campaign: Campaign, scan: Scan) -> tuple[str, dict]:
    existing = Annotation.objects.filter(campaign=campaign, scan=scan, revisions__isnull=False).first()
    if existing is not None:
        head = existing.head
        if head is not None and head.pk == row.revision_id:
            # This row's own revision 0: an earlier attempt saved it and lost its worker before
            # it recorded the end. The scan is pre-segmented; nothing runs twice.
            return PresegStatus.DONE, {
                "model_label": head.model_label,
                "model_version": None
                if head.model_version_id is None
                else ModelVersion.objects.filter(pk=head.model_version_id).first(),
                "revision": head,
            }
        return PresegStatus.SKIPPED, {"error": _skip_reason(existing)}
    version = active_model_version(campaign)
    labels = segment_scan(scan, version)
    labels = keep_schema_classes(labels, class_values(campaign.label_schema))
    label = version.label if version else BASELINE_LABEL
    with transaction.atomic():
        # The row names its revision in the revision's own transaction, so a worker lost
        # between this commit and the row's end leaves a retry that knows the revision is its.
        revision = model_revision_save(
            campaign=campaign,
            scan=scan,
            volume=labels,
            model_label=label,
            model_version_id=version.pk if version else None,
        )
        if revision is not None:
            PresegScan.objects.filter(pk=row.pk).update(revision=revision)
    fields = {"model_label": label, "model_version": version}
    if revision is None:
        return PresegStatus.SKIPPED, {
            **fields,
            "error": "labels were saved while the model ran; they are kept",
        }
    return PresegStatus.DONE, {**fields, "revision": revision}


def _skip_reason(annotation: Annotation) -> str:
    head = annotation.head
    who = head.author_display if head else "someone"
    return f"labels already exist (revision {head.number if head else '?'} by {who}); pre-segmentation never overwrites them"


def segment_scan(scan: Scan, version: ModelVersion | None) -> np.ndarray:
    """Lesion labels (z, y, x) uint8 of the scan by `version`, or by the baseline when None.
    The baseline's lung mask is kept for the quantification report on the way."""
    hu = scan_volume(scan)
    if version is None:
        labels, lungs = baseline_presegment(hu, scan.spacing)
        quantification.lung_mask_store(scan, lungs)
        return labels
    model = model_versions.load_version_model(version)
    return network.predict_volume(model, hu)


def keep_schema_classes(labels: np.ndarray, allowed: Sequence[int] | set[int]) -> np.ndarray:
    """Models emit 1 ground-glass, 2 consolidation, 3 other; a campaign whose schema lacks one
    of them gets background there rather than a class it cannot store."""
    table = np.zeros(256, dtype=np.uint8)
    for value in allowed:
        table[int(value)] = int(value)
    return table[labels]

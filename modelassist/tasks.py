"""Celery tasks of model assist: thin, take ids, safe to run twice, time-limited.

Queues: pre-segmentation on `assist`; exports and training on `train` (both can be GPU
workers). Names are part of the contract: the core sends `presegment_batch` and QC sends
`retrain_if_due` by name.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from core.models import Batch
from modelassist.services import export, preseg, training

# Per scan: the baseline takes seconds and the network on a CPU about a minute for 300 slices
# of 512 × 512; a scan past the soft limit is recorded as failed and the others carry on.
PRESEG_SOFT_LIMIT_S = int(getattr(settings, "CURATECT_PRESEG_SOFT_LIMIT_S", 600))


@shared_task(
    bind=True,
    name="modelassist.tasks.presegment_batch",
    queue="assist",
    acks_late=True,
    soft_time_limit=120,
    time_limit=180,
)
def presegment_batch(self, batch_id: int) -> dict:
    """Fan out one task per scan of the batch that still needs one."""
    batch_scans = preseg.preseg_queue_batch(batch_id)
    campaign_id = Batch.objects.values_list("campaign_id", flat=True).get(pk=batch_id)
    for scan_id in batch_scans:
        presegment_scan.apply_async(args=[campaign_id, scan_id, batch_id], queue="assist")
    return {"batch_id": batch_id, "queued": batch_scans}


@shared_task(
    bind=True,
    name="modelassist.tasks.presegment_scan",
    queue="assist",
    acks_late=True,
    soft_time_limit=PRESEG_SOFT_LIMIT_S,
    time_limit=PRESEG_SOFT_LIMIT_S + 60,
)
def presegment_scan(self, campaign_id: int, scan_id: int, batch_id: int | None = None) -> dict:
    row = preseg.presegment_scan_run(campaign_id, scan_id, batch_id, worker=self.request.hostname or "")
    return {"scan_id": scan_id, "status": row.status, "error": row.error, "seconds": row.seconds}


@shared_task(
    bind=True,
    name="modelassist.tasks.export_dataset",
    queue="train",
    acks_late=True,
    soft_time_limit=4 * 3600,
    time_limit=4 * 3600 + 300,
)
def export_dataset(self, export_id: int) -> dict:
    def progress(fraction: float, message: str) -> None:
        self.update_state(state="PROGRESS", meta={"progress": fraction, "message": message})

    done = export.export_run(export_id, progress, worker=self.request.hostname or "")
    return {"export_id": export_id, "status": done.status, "version": done.version, "error": done.error}


@shared_task(
    bind=True,
    name="modelassist.tasks.train_run",
    queue="train",
    acks_late=True,
    soft_time_limit=25 * 3600,
    time_limit=25 * 3600 + 600,
)
def train_run(self, run_id: int) -> dict:
    def progress(fraction: float, message: str) -> None:
        self.update_state(state="PROGRESS", meta={"progress": fraction, "message": message})

    run = training.training_run_execute(run_id, progress, worker=self.request.hostname or "")
    return {
        "run_id": run_id,
        "status": run.status,
        "promoted": run.promoted,
        "decision": run.decision,
        "error": run.error,
    }


@shared_task(
    name="modelassist.tasks.retrain_if_due", queue="train", acks_late=True, soft_time_limit=60, time_limit=90
)
def retrain_if_due(campaign_id: int) -> int | None:
    """Sent by QC on every batch approval: trains when enough scans were approved since the last run."""
    run = training.retrain_if_due(campaign_id)
    return run.pk if run else None


@shared_task(
    name="modelassist.tasks.retrain_scheduled",
    queue="train",
    acks_late=True,
    soft_time_limit=120,
    time_limit=180,
)
def retrain_scheduled() -> list[int]:
    """Celery beat (PeriodicTask "retrain campaigns with new curated scans"): retrain where new
    curated scans arrived since the last run."""
    return training.retrain_scheduled()

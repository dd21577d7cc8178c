"""Celery tasks of the core: thin wrappers that take ids and call a service."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready
from django.db import close_old_connections, connection

from imaging.ingest.service import import_job_run
from imaging.models import ImportJob

logger = logging.getLogger(__name__)


@shared_task(
    bind=True, name="imaging.tasks.import_run", acks_late=True, soft_time_limit=3600, time_limit=3700
)
def import_run(self, job_id: int) -> dict:
    job = ImportJob.objects.select_related("institution", "created_by").get(pk=job_id)
    if job.status in (ImportJob.Status.DONE, ImportJob.Status.FAILED):
        return job.report  # already ran: importing is idempotent, but there is no need to redo it

    def progress(fraction: float, message: str) -> None:
        self.update_state(state="PROGRESS", meta={"progress": fraction, "message": message})

    return import_job_run(job, progress, worker=self.request.hostname or "").report


@worker_ready.connect
def leftovers_sweep_at_start(sender=None, **kwargs) -> None:
    """A worker that starts fails the imports its previous life left running and deletes raw
    files that no queued or running job owns (see imaging.ingest.cleanup)."""
    from imaging.ingest.cleanup import leftovers_sweep

    try:
        leftovers_sweep(getattr(sender, "hostname", "") or "")
    except Exception:  # a failed sweep must not stop the worker from serving
        logger.exception("ingest sweep at worker start failed")
    finally:
        if not connection.in_atomic_block:  # the main process forks no more children: let go
            close_old_connections()

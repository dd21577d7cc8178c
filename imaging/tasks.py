"""Celery tasks of imaging: thin wrappers that take ids and call a service."""

from __future__ import annotations

import logging

from celery import shared_task
from django.dispatch import receiver

from core.jobs.signals import jobs_swept
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


@receiver(jobs_swept, dispatch_uid="imaging.tasks.leftovers_sweep_after_jobs")
def leftovers_sweep_after_jobs(sender=None, **kwargs) -> None:
    """After a job sweep (worker start, and beat's periodic one), once core.jobs has failed the
    imports left running: delete raw files that no queued or running job owns (see
    imaging.ingest.cleanup)."""
    from imaging.ingest.cleanup import leftovers_sweep

    leftovers_sweep()

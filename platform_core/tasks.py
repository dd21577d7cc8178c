"""Celery tasks of the core: thin wrappers that take ids and call a service."""

from __future__ import annotations

from celery import shared_task

from platform_core.ingest.service import import_job_run
from platform_core.models import ImportJob


@shared_task(
    bind=True, name="platform_core.tasks.import_run", acks_late=True, soft_time_limit=3600, time_limit=3700
)
def import_run(self, job_id: int) -> dict:
    job = ImportJob.objects.select_related("institution", "created_by").get(pk=job_id)
    if job.status in (ImportJob.Status.DONE, ImportJob.Status.FAILED):
        return job.report  # already ran: importing is idempotent, but there is no need to redo it

    def progress(fraction: float, message: str) -> None:
        self.update_state(state="PROGRESS", meta={"progress": fraction, "message": message})

    return import_job_run(job, progress).report

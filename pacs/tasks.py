"""Celery tasks of the PACS features (ingest queue): thin, take ids, safe to run twice."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from celery import shared_task

from core.jobs.services import job_claim
from imaging.models import ImportJob
from pacs import intake, pulls

FINISHED = (ImportJob.Status.DONE, ImportJob.Status.FAILED)


def _progress(task):
    def report(fraction: float, message: str) -> None:
        task.update_state(state="PROGRESS", meta={"progress": fraction, "message": message})

    return report


def _claim(task, job: ImportJob) -> bool:
    """Claim the job for this node: if it dies, its next start fails the job (core.jobs'
    sweep). A redelivered message takes over a running job: its first consumer is gone."""
    return job_claim(job, worker=task.request.hostname or "", stale_after=timedelta(0))


@shared_task(
    bind=True,
    name="pacs.tasks.pull_run",
    acks_late=True,
    soft_time_limit=6 * 3600,
    time_limit=6 * 3600 + 120,
)
def pull_run(self, job_id: int) -> dict:
    job = ImportJob.objects.select_related("institution").get(pk=job_id)
    if job.status in FINISHED or not _claim(self, job):
        job.refresh_from_db()
        return job.report
    return pulls.pull_run(job, _progress(self)).report


@shared_task(name="pacs.tasks.pull_periodic", soft_time_limit=600, time_limit=660)
def pull_periodic() -> list[int]:
    return pulls.pull_periodic()


@shared_task(
    bind=True,
    name="pacs.tasks.spool_import_run",
    acks_late=True,
    soft_time_limit=3600,
    time_limit=3700,
)
def spool_import_run(self, job_id: int) -> dict:
    """A series the C-STORE listener received (its --ingest celery mode)."""
    job = ImportJob.objects.get(pk=job_id)
    if job.status in FINISHED or not _claim(self, job):
        job.refresh_from_db()
        return job.report
    folder = Path(job.report["spool"])
    extra = job.report.get("pending", {})
    if not folder.is_dir():
        return intake.job_finish(
            job,
            status=ImportJob.Status.FAILED,
            report={
                **intake.empty_report(),
                **extra,
                "error": "the spooled files are gone (listener data volume?)",
            },
        ).report
    return intake.job_run_folder(
        job, folder, origin_source="dimse", extra=extra, progress=_progress(self)
    ).report

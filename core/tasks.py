"""Celery tasks of the core: the periodic job sweep (beat, settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from core.jobs.services import jobs_sweep_stale as sweep_stale
from core.jobs.signals import after_jobs_sweep


@shared_task(name="core.tasks.jobs_sweep_stale", soft_time_limit=240, time_limit=300)
def jobs_sweep_stale() -> dict[str, int]:
    """End the jobs running past their kind's limit, then let the apps remove what a killed
    process left and no live job owns (a web process's half-written label file, the raw files
    of a killed STOW or upload): without a worker restart these stayed until one."""
    counts = sweep_stale()
    after_jobs_sweep()
    return counts

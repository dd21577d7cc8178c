"""Celery tasks of the core: the periodic job sweep (beat, settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from core.jobs.services import jobs_sweep_stale as sweep_stale


@shared_task(name="core.tasks.jobs_sweep_stale", soft_time_limit=240, time_limit=300)
def jobs_sweep_stale() -> dict[str, int]:
    return sweep_stale()

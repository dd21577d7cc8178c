"""Celery tasks of federation runs, on the `train` queue: the coordinator's SuperLink +
ServerApp, and a site's SuperNode. Thin: each calls its service. Both run for the whole run
(hours), so their limits are long; a redelivered message finds the job claimed and returns."""

from __future__ import annotations

from celery import shared_task

from federation.services import runs, sites

LIMIT_S = 7 * 24 * 3600


@shared_task(
    bind=True,
    name="federation.tasks.federation_run_coordinate",
    queue="train",
    acks_late=True,
    soft_time_limit=LIMIT_S,
    time_limit=LIMIT_S + 600,
)
def federation_run_coordinate(self, run_id: int) -> dict:
    run = runs.federation_run_execute(run_id, worker=self.request.hostname or "")
    return {"run_id": run_id, "status": run.status, "error": run.error}


@shared_task(
    bind=True,
    name="federation.tasks.federation_site_serve",
    queue="train",
    acks_late=True,
    soft_time_limit=LIMIT_S,
    time_limit=LIMIT_S + 600,
)
def federation_site_serve(self, site_id: int) -> dict:
    site = sites.federation_site_serve(site_id, worker=self.request.hostname or "")
    return {"site_id": site_id, "status": site.status, "error": site.error}

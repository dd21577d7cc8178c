"""The one hook at worker start: sweep every job kind, then let the apps clean up after it
(after_jobs_sweep; the periodic sweep calls it too).

Connected in the core's AppConfig.ready, so it is in place before any task module loads.
Apps that keep files for their jobs (ingest's raw uploads) connect to `jobs_swept`, which is
sent after the sweep: by then the jobs a dead worker left are no longer running, and what
they owned may go.
"""

from __future__ import annotations

import logging

import django.dispatch
from celery.signals import worker_ready
from django.db import close_old_connections, connection

logger = logging.getLogger(__name__)

# Sent with hostname= after jobs_sweep at worker start.
jobs_swept = django.dispatch.Signal()


@worker_ready.connect(dispatch_uid="core.jobs.sweep_at_worker_start")
def sweep_at_worker_start(sender=None, **kwargs) -> None:
    from core.jobs.services import jobs_sweep

    hostname = getattr(sender, "hostname", "") or ""
    try:
        jobs_sweep(hostname)
    except Exception:  # a failed sweep must not stop the worker from serving
        logger.exception("job sweep at worker start failed")
    try:
        after_jobs_sweep(hostname)
    finally:
        if not connection.in_atomic_block:  # the main process forks no more children: let go
            close_old_connections()


def after_jobs_sweep(hostname: str = "") -> None:
    """Let the apps clean up what no queued or running job owns any more (at worker start, and
    after the periodic sweep, core.tasks.jobs_sweep_stale); one app's failure stops no other."""
    for receiver, result in jobs_swept.send_robust(sender=None, hostname=hostname):
        if isinstance(result, Exception):
            logger.error("clean-up after the job sweep failed (%s)", receiver, exc_info=result)

"""The start-up sweep beyond its own node (core.jobs.jobs_sweep): a job running on any node for
longer than its kind may run is lost, whatever node name it carries. A worker whose container
was recreated comes back under a new name (celery@<new container id>), and the listener and the
STOW endpoint claim their imports under no node name at all: before, their SIGKILLed jobs stayed
"running" for ever, since the sweep only took the starting node's own jobs."""

from __future__ import annotations

import socket
import subprocess
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from annotation.storage import TMP_PREFIX
from core.jobs.services import job_claim, job_max_running, jobs_sweep
from imaging.models import DEAD_WORKER, ImportJob
from modelassist.models import DatasetExport, TrainingRun
from pacs.models import PulledStudy

NEW_NODE = "celery@f00dcafe"


def _running(job, worker: str, ago: timedelta):
    assert job_claim(job, worker=worker)
    type(job).objects.filter(pk=job.pk).update(started_at=timezone.now() - ago)
    return job


def test_each_kind_may_run_as_long_as_its_task_hard_time_limit():
    assert job_max_running(ImportJob) == timedelta(seconds=3700 + 60)
    assert job_max_running(DatasetExport) == timedelta(seconds=4 * 3600 + 300 + 60)
    assert job_max_running(TrainingRun) == timedelta(seconds=25 * 3600 + 600 + 60)
    assert job_max_running(PulledStudy) == timedelta(hours=6, minutes=3)


def test_jobs_of_a_vanished_node_are_swept_once_past_their_limit(cast, django_capture_on_commit_callbacks):
    from modelassist.services.export import export_request

    # Given an export of a node that came back under another name, 5 h ago (limit 4 h 6 min),
    # an import the listener claimed (no node name) 2 h ago, and a fresh export on a live node
    stale_export = _running(
        DatasetExport.objects.create(campaign=cast.campaign), "celery@old-container", timedelta(hours=5)
    )
    listener_import = _running(
        ImportJob.objects.create(institution=cast.institution, source="dimse"), "", timedelta(hours=2)
    )
    live_export = _running(
        DatasetExport.objects.create(campaign=cast.campaign), "celery@busy", timedelta(minutes=1)
    )
    assert export_request  # the kinds' task modules are importable here

    # When a worker starts under a new name
    with django_capture_on_commit_callbacks() as sent:
        counts = jobs_sweep(NEW_NODE)

    # Then the lost ones end (the export re-queued and sent again, the import failed with why)
    # and the live one runs on
    assert counts == {"requeued": 1, "failed": 1}
    assert DatasetExport.objects.get(pk=stale_export.pk).status == "queued" and len(sent) == 1
    failed = ImportJob.objects.get(pk=listener_import.pk)
    assert failed.status == "failed" and failed.report["error"] == DEAD_WORKER
    assert DatasetExport.objects.get(pk=live_export.pk).status == "running"


def test_the_periodic_sweep_ends_stale_jobs_without_a_worker_starting(
    cast, django_capture_on_commit_callbacks
):
    from core.tasks import jobs_sweep_stale

    # Given an import the STOW endpoint claimed 2 h ago (its web process was killed), one the
    # listener claimed a minute ago, and an export of a vanished node 5 h ago
    stow_import = _running(
        ImportJob.objects.create(institution=cast.institution, source="stow"), "", timedelta(hours=2)
    )
    fresh_import = _running(
        ImportJob.objects.create(institution=cast.institution, source="dimse"), "", timedelta(minutes=1)
    )
    stale_export = _running(
        DatasetExport.objects.create(campaign=cast.campaign), "celery@old-container", timedelta(hours=5)
    )

    # and a label file a killed web process was writing (named for its dead process)
    gone = subprocess.Popen(["true"])
    gone.wait()
    half_written = (
        Path(settings.MEDIA_ROOT) / "labels" / "ab" / f"{TMP_PREFIX}x~{gone.pid}@{socket.gethostname()}"
    )
    half_written.parent.mkdir(parents=True)
    half_written.write_bytes(b"half a label volume")

    # When beat's task runs (no worker started)
    with django_capture_on_commit_callbacks() as sent:
        counts = jobs_sweep_stale.apply().get()

    # Then the stale ones end as the start-up sweep ends them; the fresh import runs on
    assert counts == {"requeued": 1, "failed": 1}
    failed = ImportJob.objects.get(pk=stow_import.pk)
    assert failed.status == "failed" and failed.report["error"] == DEAD_WORKER
    assert DatasetExport.objects.get(pk=stale_export.pk).status == "queued" and len(sent) == 1
    assert ImportJob.objects.get(pk=fresh_import.pk).status == "running"
    assert not half_written.exists()


def test_every_beat_entry_names_a_task_the_workers_know():
    from django.conf import settings

    from platform_core.celery import app

    app.loader.import_default_modules()
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert "jobs-sweep-stale" in schedule
    assert {entry["task"] for entry in schedule.values()} <= set(app.tasks)

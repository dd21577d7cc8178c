"""The one job lifecycle (core.jobs): claim by compare-and-swap, refused transitions, failure
with a reason and an audit event, and the sweep at worker start for every job kind."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from core.api_errors import DomainError
from core.jobs.models import LOST_WORKER, job_kinds
from core.jobs.services import (
    JobTransitionRefused,
    job_claim,
    job_fail,
    job_finish,
    job_progress,
    job_requeue,
    jobs_sweep,
)
from core.models import AuditEvent, Batch, BatchItem
from imaging.models import DEAD_WORKER, ImportJob
from modelassist.models import DatasetExport, PresegRun, PresegScan, TrainingRun
from pacs.models import PacsSend, PulledStudy, RemotePacs

HOST = "celery@ingest-1"


def _import_job(cast, **kw) -> ImportJob:
    return ImportJob.objects.create(institution=cast.institution, source="/nowhere", **kw)


def test_every_kind_of_job_is_registered_for_the_sweep():
    assert {k.__name__ for k in job_kinds()} == {
        "ImportJob",
        "PulledStudy",
        "PacsSend",
        "PresegScan",
        "DatasetExport",
        "TrainingRun",
        "FederationRun",
        "FederationSite",
    }


def test_a_job_is_claimed_by_exactly_one_of_two_claimers(cast):
    job = _import_job(cast)
    first, second = ImportJob.objects.get(pk=job.pk), ImportJob.objects.get(pk=job.pk)

    assert job_claim(first, worker="celery@a") is True
    assert job_claim(second, worker="celery@b") is False

    job.refresh_from_db()
    assert job.status == "running" and job.worker == "celery@a" and job.started_at is not None


def test_progress_stops_counting_once_the_job_ended(cast):
    job = _import_job(cast)
    job_claim(job, worker=HOST)
    assert job_progress(job, 0.5, "half way") is True
    job_fail(job, "cancelled by manager")
    assert job_progress(job, 0.6, "later") is False
    job.refresh_from_db()
    assert job.progress == 0.5 and job.message == "failed"


def test_illegal_transitions_are_refused(cast):
    job = _import_job(cast)
    with pytest.raises(JobTransitionRefused):
        job_finish(job, "queued")  # running → queued is the sweep's re-queue, not a finish
    with pytest.raises(JobTransitionRefused):
        job_requeue(job, from_states=["done"])  # an import never runs twice
    job_claim(job)
    assert job_finish(job, "done", report={"scans_created": [1]}) is True
    # Ended: nothing moves it any more, and a late claimer or failure loses.
    assert job_claim(ImportJob.objects.get(pk=job.pk)) is False
    assert job_fail(job, "too late") is False
    job.refresh_from_db()
    assert job.status == "done" and "error" not in job.report


def test_a_kind_keeps_its_own_status_words(cast, import_phantoms):
    scan = import_phantoms(1, slices=8, size=32)[0]
    remote = RemotePacs.objects.create(institution=cast.institution, name="PACS", send_method="stow")
    send = PacsSend.objects.create(remote=remote, scan=scan)
    job_claim(send)
    with pytest.raises(JobTransitionRefused):
        job_finish(send, "done")  # a send ends "sent"
    assert job_finish(send) is True
    assert PacsSend.objects.get(pk=send.pk).status == "sent"


def test_a_failure_records_its_reason_and_an_audit_event(cast):
    export = DatasetExport.objects.create(campaign=cast.campaign)
    job_claim(export, worker=HOST)

    assert job_fail(export, DomainError("no approved batch has curated labels"), action="export_failed")

    export.refresh_from_db()
    assert export.status == "failed" and export.error == "no approved batch has curated labels"
    assert export.finished_at is not None
    event = AuditEvent.objects.get(action="export_failed", object_id=str(export.pk))
    assert (event.from_state, event.to_state) == ("running", "failed")
    assert event.details["reason"] == "no approved batch has curated labels"


def test_an_import_failure_is_in_its_report(cast):
    job = _import_job(cast)
    assert job_fail(job, "cancelled by manager", actor=cast.manager, action="import_cancel")
    job.refresh_from_db()
    assert job.status == "failed" and job.report["error"] == "cancelled by manager"
    event = AuditEvent.objects.get(action="import_cancel", object_id=str(job.pk))
    assert event.actor == cast.manager and event.from_state == "queued"


def _running_of_every_kind(cast, scan, worker: str) -> dict[str, object]:
    remote, _ = RemotePacs.objects.get_or_create(
        institution=cast.institution, name="PACS", defaults={"send_method": "stow"}
    )
    imp = _import_job(cast)
    batch, _ = Batch.objects.get_or_create(
        campaign=cast.campaign, name="b1", defaults={"annotator": cast.annotator, "created_by": cast.manager}
    )
    BatchItem.objects.get_or_create(
        batch=batch, scan=scan, defaults={"campaign": cast.campaign, "position": 0}
    )
    run, _ = PresegRun.objects.get_or_create(batch=batch, campaign=cast.campaign)
    jobs = {
        "import": imp,
        "pulled": PulledStudy.objects.create(remote=remote, study_uid=f"1.2.{worker[-1]}", import_job=imp),
        "send": PacsSend.objects.create(remote=remote, scan=scan),
        "preseg": PresegScan.objects.get_or_create(run=run, scan=scan)[0],
        "export": DatasetExport.objects.create(campaign=cast.campaign),
        "training": TrainingRun.objects.create(campaign=cast.campaign, architecture="unet2d"),
    }
    for job in jobs.values():
        assert job_claim(job, worker=worker)
    return jobs


def test_the_sweep_requeues_or_fails_what_a_dead_worker_left_running(
    cast, import_phantoms, django_capture_on_commit_callbacks
):
    scan = import_phantoms(1, slices=8, size=32)[0]
    dead = _running_of_every_kind(cast, scan, HOST)

    with django_capture_on_commit_callbacks() as sent:
        counts = jobs_sweep(HOST)

    assert counts == {"requeued": 3, "failed": 3}
    fresh = {name: type(job).objects.get(pk=job.pk) for name, job in dead.items()}
    # Safe to run again: back in the queue, their tasks sent again after commit.
    for name in ("preseg", "export", "training"):
        assert fresh[name].status == "queued" and fresh[name].worker == "", name
        assert AuditEvent.objects.filter(object_id=str(fresh[name].pk), to_state="queued").exists()
    assert len(sent) == 3
    # Not safe (raw files swept, a PACS that may have received the SEG): failed, with why.
    assert fresh["import"].status == "failed" and fresh["import"].report["error"] == DEAD_WORKER
    assert fresh["send"].status == "failed" and fresh["send"].detail == PacsSend.job_lost_reason
    assert fresh["pulled"].status == "failed" and fresh["pulled"].detail == LOST_WORKER
    assert AuditEvent.objects.filter(
        action="import", object_id=str(fresh["import"].pk), to_state="failed"
    ).exists()
    assert AuditEvent.objects.filter(
        action="pacs_send", object_id=str(fresh["send"].pk), to_state="failed"
    ).exists()


def test_the_sweep_leaves_other_workers_and_queued_jobs_alone(cast):
    other = _import_job(cast)
    job_claim(other, worker="celery@ingest-2")
    queued = _import_job(cast)

    assert jobs_sweep(HOST) == {"requeued": 0, "failed": 0}
    assert jobs_sweep("") == {"requeued": 0, "failed": 0}  # a nameless node claims nothing

    assert ImportJob.objects.get(pk=other.pk).status == "running"
    assert ImportJob.objects.get(pk=queued.pk).status == "queued"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_at_the_same_instant_on_postgresql(cast):
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL: SQLite's IMMEDIATE transactions serialise every writer, so two "
            "claims cannot overlap there (make test-pg runs this)"
        )
    for _ in range(10):
        job = _import_job(cast)
        results = _at_once(job.pk)
        assert sorted(results) == [False, True]
        job.refresh_from_db()
        assert job.worker == f"celery@{results.index(True)}"


def _at_once(pk: int) -> list[bool | None]:
    """Two threads, each with its own connection, claim the job released together."""
    barrier = threading.Barrier(2)
    results: list[bool | None] = [None, None]

    def claim(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = job_claim(ImportJob.objects.get(pk=pk), worker=f"celery@{i}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results

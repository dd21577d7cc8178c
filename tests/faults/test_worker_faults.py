"""Issue #16 §2: SIGKILL a real Celery worker (its whole process group) at a seeded random point
inside an ingest, a pre-segmentation, an export and a training run; start it again under the
same node name; every job ends done (run again) or failed with a reason within SETTLE_S, and
verify_storage (its own process) finds every stored file whole and owned.

The embedded default's folder broker deletes a message when a worker takes it, so a killed
worker's running task is gone from the broker: the start-up sweep (core.jobs) must re-queue or
fail it. These tests run on whatever database the suite runs on (SQLite or PostgreSQL).
"""

from __future__ import annotations

import pytest

from tests.conftest import make_series
from tests.faults import harness

pytestmark = pytest.mark.django_db(transaction=True)


def _kill_at_progress(child: harness.Child, read, fault: str, low: float, high: float) -> float:
    """Wait until the job (read() → (status, progress)) has run past a seeded point, then SIGKILL."""
    point = harness.kill_point(fault, low, high)

    def reached() -> bool:
        status, progress = read()
        assert status not in ("done", "failed", "sent", "skipped"), (
            f"{fault}: the job ended ({status}) before the kill point {point:.2f}: make the work bigger"
        )
        return status == "running" and progress >= point

    harness.wait_for(reached, 240, f"{fault} to pass {point:.2f}", every=0.02)
    child.kill()
    return point


def _swept(worker: harness.Child, action: str, pks) -> bool:
    """The start-up sweep of the restarted node audited its re-queue (or failure) of these jobs."""
    from core.models import AuditEvent

    events = AuditEvent.objects.filter(action=action, object_id__in=[str(pk) for pk in pks])
    return bool(pks) and all(
        events.filter(object_id=str(pk), actor_label=f"worker {worker.hostname}").exists() for pk in pks
    )


def _settled(model, pk, *, ended=("done", "failed"), longest: float = 0.0):
    """The row once it ended: within SETTLE_S, plus `longest`, the most the work run again may
    take by its own limits (a training run's max_minutes)."""

    def _ended():
        row = model.objects.get(pk=pk)
        return row if row.status in ended else None

    return harness.wait_for(
        _ended, harness.SETTLE_S + longest, f"{model.__name__} {pk} to end after the restart", every=0.2
    )


def test_worker_killed_during_an_ingest(cast, tmp_path, start_worker, fault_broker, storage_intact):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from core.models import Scan
    from imaging.ingest.service import import_upload_create, uploads_root
    from imaging.models import DEAD_WORKER, ImportJob

    # Given an upload of three small series (~140 files) queued for a real worker
    folder = tmp_path / "upload"
    for seed in range(3):
        make_series(folder, slices=48, size=64, seed=seed, patient=f"P-{seed}")
    files = [
        SimpleUploadedFile(f"{p.parent.name}-{p.name}", p.read_bytes()) for p in sorted(folder.rglob("*.dcm"))
    ]
    assert len(files) == 144
    worker = start_worker()
    with fault_broker():
        job = import_upload_create(
            actor=cast.manager, institution=cast.institution, campaign=cast.campaign, files=files
        )

        # When the worker is killed while it reads or stores, and comes back
        def read():
            row = ImportJob.objects.get(pk=job.pk)
            return row.status, row.progress

        point = _kill_at_progress(worker, read, "ingest", 0.1, 0.9)
        stored_before_restart = Scan.objects.count()
        worker.start()

        # Then the import fails with the reason (a lost import's raw files are swept: it cannot run
        # again), the series it stored stay whole, and the raw upload is gone
        done = _settled(ImportJob, job.pk)
    assert done.status == "failed", done.report
    assert done.report["error"] == DEAD_WORKER
    assert _swept(worker, "import", [job.pk])
    assert Scan.objects.count() == stored_before_restart
    for scan in Scan.objects.all():
        assert scan.slices == 48 and scan.instances.count() == 48
    assert not any(uploads_root().iterdir()), list(uploads_root().iterdir())
    storage_intact(
        "worker SIGKILL during an ingest",
        f"killed at progress {point:.2f}; import failed ({DEAD_WORKER[:40]}...), "
        f"{stored_before_restart} of 3 series stored whole",
    )


def test_worker_killed_during_a_pre_segmentation(
    cast, import_phantoms, start_worker, fault_broker, storage_intact
):
    from annotation.models import Revision
    from core.services.batches import batch_build
    from modelassist.models import PresegScan

    # Given four scans and a real worker
    scans = import_phantoms(4, slices=40, size=128)
    worker = start_worker()
    # Never one of the last two: on a quiet machine a 40-slice scan segments in well under the
    # delay, and the kill must still find a scan running after the target ended.
    target = int(harness.kill_point("preseg-scan", 0, len(scans) - 2))
    delay = harness.kill_point("preseg-delay", 0.0, 0.05)
    with fault_broker():
        # When their batch is assigned (its pre-segmentation fans out one task per scan) and the
        # worker is killed while it segments one of them
        batch_build(
            actor=cast.manager,
            campaign=cast.campaign,
            annotator=cast.annotator,
            scan_ids=[s.pk for s in scans],
        )

        def running_target():
            row = PresegScan.objects.filter(scan=scans[target]).first()
            return row is not None and row.status == "running"

        harness.wait_for(running_target, 240, f"the pre-segmentation of scan {target} to start", every=0.02)
        harness.time.sleep(delay)

        # Past its end already (a busy machine is slower or faster than the seed assumed): the
        # kill lands in the next scan that runs.
        def some_running() -> bool:
            statuses = set(PresegScan.objects.values_list("status", flat=True))
            assert statuses != {"done"}, "every scan ended before the kill: make the scans bigger"
            return "running" in statuses

        harness.wait_for(some_running, 60, "a scan to run", every=0.005)
        worker.kill()
        killed = list(PresegScan.objects.filter(status="running").values_list("pk", flat=True))
        assert killed, "the kill landed between two scans"
        worker.start()

        # Then the sweep re-queues the lost scan and every scan ends done, with exactly one
        # revision 0 each (running it again never doubles nor overwrites)
        rows = [
            _settled(PresegScan, r.pk, ended=("done", "failed", "skipped")) for r in PresegScan.objects.all()
        ]
    assert [r.status for r in rows] == ["done"] * len(scans), [(r.status, r.error) for r in rows]
    for scan in scans:
        assert Revision.objects.filter(annotation__scan=scan).count() == 1
    assert _swept(worker, "preseg_scan_requeue", killed)
    storage_intact(
        "worker SIGKILL during a pre-segmentation",
        f"killed {delay:.2f}s into scan {target + 1} of {len(scans)}; the start-up sweep re-queued it "
        f"and sent its task again; all {len(scans)} scans done, one revision 0 each",
    )


@pytest.fixture
def curated(cast, tmp_path, settings):
    """Scans of four institutions, approved through the real services: every split has a case."""
    from tests.modelassist.curated import approve, import_scans, label_volume

    settings.CURATECT_MIN_TEST_CASES = 1
    cases = []
    for slug, n, seed in [("alpha", 3, 0), ("bravo", 1, 10), ("charlie", 1, 20), ("delta", 1, 30)]:
        cases += [
            (s, label_volume(t, s.shape))
            for s, t in import_scans(cast, tmp_path, slug, n, first_seed=seed, slices=24, size=64)
        ]
    approve(cast, cases)
    return cases


def test_worker_killed_during_an_export(cast, curated, start_worker, fault_broker, storage_intact):
    from modelassist.models import DatasetExport
    from modelassist.services.export import export_request

    worker = start_worker()
    with fault_broker():
        export = export_request(actor=cast.manager, campaign=cast.campaign)

        def read():
            row = DatasetExport.objects.get(pk=export.pk)
            return row.status, row.progress

        point = _kill_at_progress(worker, read, "export", 0.05, 0.9)
        worker.start()
        done = _settled(DatasetExport, export.pk)
    # Then the export ran again from the start and was published once, as version 1
    assert done.status == "done", done.error
    assert done.version == 1 and done.content_sha256
    assert DatasetExport.objects.filter(version__isnull=False).count() == 1
    assert _swept(worker, "export_requeue", [export.pk])
    storage_intact(
        "worker SIGKILL during an export",
        f"killed at progress {point:.2f}; re-queued by the start-up sweep, ran again, published v{done.version}",
    )


def test_worker_killed_during_a_training_run(cast, curated, start_worker, fault_broker, storage_intact):
    from modelassist.models import ModelVersion, TrainingRun
    from modelassist.services.training import training_request

    params = {"epochs": 6, "slices_per_case": 8, "batch_size": 4, "patience": 6, "max_minutes": 2}
    worker = start_worker()
    with fault_broker():
        run = training_request(
            actor=cast.manager, campaign=cast.campaign, architecture="unet2d-tiny", params=params
        )

        def read():
            row = TrainingRun.objects.get(pk=run.pk)
            return row.status, row.progress

        point = _kill_at_progress(worker, read, "training", 0.05, 0.9)
        versions_at_kill = ModelVersion.objects.count()
        worker.start()
        done = _settled(TrainingRun, run.pk, longest=params["max_minutes"] * 60)
    # Then the run was re-queued, trained again from the start and registered one model version
    assert done.status == "done", done.error
    assert versions_at_kill == 0
    assert ModelVersion.objects.count() == 1 and done.model_version_id
    assert _swept(worker, "training_requeue", [run.pk])
    storage_intact(
        "worker SIGKILL during a training run",
        f"killed at progress {point:.2f}; re-queued by the start-up sweep, trained again, "
        f"model version {done.model_version_id} registered ({'promoted' if done.promoted else 'not promoted'})",
    )

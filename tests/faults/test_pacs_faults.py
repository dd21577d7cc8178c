"""Issue #16 §2: SIGKILL the DICOM listener (manage.py dicom_listener, its own process group)
inside an association, at a seeded number of received instances; start it again; the sender
sends the series again. The half delivery is dropped, never imported; the series is stored
once, whole; verify_storage finds every stored file whole and owned. And SIGKILL it inside the
import it runs itself: its restart ends that import failed, saying why, and imports the spooled
series again without a resend."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import make_series
from tests.faults import harness

pytestmark = pytest.mark.django_db(transaction=True)
SENDER_AE = "HOSP_A"


def _storescu(port: int, folder: Path) -> subprocess.Popen:
    binary = shutil.which("storescu")
    if binary is None:
        pytest.skip("storescu not found: apt-get install dcmtk (make dicom-peers installs it)")
    return subprocess.Popen(
        [binary, "-aet", SENDER_AE, "-aec", "CURATECT", "+sd", "+r", "127.0.0.1", str(port), str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**harness.child_env()},
    )


def _listening(cast, children: list, fault_logs: Path) -> tuple[int, harness.Child]:
    """The institution accepts SENDER_AE; the listener runs in its own process on a free port."""
    cast.institution.allowed_ae_titles = [SENDER_AE]
    cast.institution.save(update_fields=["allowed_ae_titles"])
    port = harness.free_port()
    listener = _listener(port, fault_logs)
    children.append(listener)
    listener.start()
    return port, listener


def _listener(port: int, fault_logs: Path) -> harness.Child:
    return harness.Child(
        "listener",
        [
            sys.executable,
            "manage.py",
            "dicom_listener",
            "--host=127.0.0.1",
            f"--port={port}",
            "--ae-title=CURATECT",
            "--quiet-seconds=1",
            "--workers=0",
        ],
        fault_logs,
        ready="DICOM listener CURATECT on",
    )


def test_listener_killed_during_an_association(cast, tmp_path, children, fault_logs, storage_intact):
    from core.models import Scan
    from imaging.models import ImportJob

    # Given the institution accepts HOSP_A, a 60-slice series, and the listener in its own process
    series = make_series(tmp_path / "send", slices=60, size=128, seed=3, patient="P-L")
    port, listener = _listening(cast, children, fault_logs)
    spool = Path(settings.DATA_DIR) / "pacs-spool"

    # When it is SIGKILLed after a seeded number of instances of the association arrived
    at = int(harness.kill_point("listener", 5, 50))
    sender = _storescu(port, series)
    harness.wait_for(lambda: len(list(spool.rglob("*.dcm"))) >= at, 120, f"{at} instances in the spool")
    listener.kill()
    first = sender.wait(timeout=60)
    received = len(list(spool.rglob("*.dcm")))
    listener.start()
    resend = _storescu(port, series)
    out = resend.communicate(timeout=180)[0].decode(errors="replace")

    # Then the first sender saw a failure, the half delivery was never imported, and the resent
    # series is stored once, whole
    assert first != 0
    assert resend.returncode == 0, out
    job = harness.wait_for(
        lambda: ImportJob.objects.filter(status__in=["done", "failed"]).first(),
        harness.SETTLE_S,
        "the import",
    )
    assert job.status == "done", job.report
    assert ImportJob.objects.count() == 1
    (scan,) = Scan.objects.all()
    assert scan.slices == 60 and scan.instances.count() == 60
    harness.wait_for(lambda: not list(spool.rglob("*.dcm")), 30, "the spool to empty")
    storage_intact(
        "DICOM listener SIGKILL during an association",
        f"killed after {received} of 60 instances; storescu exit {first}; after the restart the half "
        f"delivery was dropped (never imported), the resent series imported once whole (60 slices)",
    )


def test_listener_killed_during_its_import(cast, tmp_path, children, fault_logs, storage_intact):
    from core.models import Scan
    from imaging.models import ImportJob
    from pacs.receiver import LISTENER_STOPPED

    # Given a whole series received by the listener (its own process), which imports it itself
    series = make_series(tmp_path / "send", slices=200, size=512, seed=4, patient="P-I")
    port, listener = _listening(cast, children, fault_logs)
    sent = _storescu(port, series)
    assert sent.wait(timeout=180) == 0

    # When it is SIGKILLed a seeded moment after its import started
    killed = harness.wait_for(
        lambda: ImportJob.objects.filter(status="running").first(),
        120,
        "the listener's import to start",
        every=0.01,
    )
    harness.time.sleep(harness.kill_point("listener-import", 0.0, 0.1))
    listener.kill()
    killed.refresh_from_db()
    took = (killed.finished_at - killed.started_at).total_seconds() if killed.finished_at else None
    assert killed.status == "running", f"the import ended before the kill ({killed.status} in {took} s)"
    listener.start()

    # Then the import it was killed in ends failed with why, and the spooled series is imported
    # again, once, whole, with no resend
    killed = harness.wait_for(
        lambda: ImportJob.objects.filter(pk=killed.pk, status="failed").first(),
        60,
        "the killed import to end",
    )
    assert killed.report["error"] == LISTENER_STOPPED
    again = harness.wait_for(
        lambda: ImportJob.objects.exclude(pk=killed.pk).filter(status__in=["done", "failed"]).first(),
        harness.SETTLE_S,
        "the import after the restart",
    )
    assert again.status == "done", again.report
    assert again.report["received"]["recovered"] is True
    (scan,) = Scan.objects.all()
    assert scan.slices == 200 and scan.instances.count() == 200
    storage_intact(
        "DICOM listener SIGKILL during its import",
        f"killed import {killed.pk} failed at the restart ({LISTENER_STOPPED.split(';')[0]}); the spooled "
        "series imported again once whole (200 slices) without a resend",
    )


@pytest.fixture
def orthanc(tmp_path):
    """A real Orthanc with its DICOMweb plugin (tests/pacs' peer), for this test only."""
    from tests.pacs.conftest import ORTHANC_PLUGIN, Orthanc, need

    need("Orthanc", "orthanc")
    if not ORTHANC_PLUGIN.exists():
        pytest.skip(f"{ORTHANC_PLUGIN} not found: apt-get install orthanc-dicomweb (make dicom-peers)")
    (tmp_path / "orthanc").mkdir()
    server = Orthanc(tmp_path / "orthanc")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def remote(cast, orthanc):
    from tests.pacs.conftest import orthanc_remote

    return orthanc_remote(cast.institution, orthanc)


def test_worker_killed_during_a_pacs_pull(
    cast, tmp_path, orthanc, remote, start_worker, fault_broker, storage_intact
):
    import pydicom

    from imaging.models import DEAD_WORKER, ImportJob
    from pacs import pulls
    from pacs.models import PulledStudy, SeriesOrigin

    # Given three studies in the hospital's PACS and a real worker
    uids = []
    for seed in range(3):
        folder = make_series(tmp_path / "pacs", slices=40, size=64, seed=30 + seed, patient=f"MRN-{seed}")
        orthanc.upload(folder)
        uids.append(pydicom.dcmread(next(folder.rglob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)
    worker = start_worker()
    with fault_broker():
        # When the worker is killed while it retrieves or ingests them, and comes back
        job = pulls.pull_start(actor=cast.manager, remote=remote, study_uids=uids, campaign=cast.campaign)

        def read():
            row = ImportJob.objects.get(pk=job.pk)
            return row.status, row.progress

        from tests.faults.test_worker_faults import _kill_at_progress, _settled

        point = _kill_at_progress(worker, read, "pacs-pull", 0.05, 0.9)
        worker.start()
        done = _settled(ImportJob, job.pk)
        studies = [_settled(PulledStudy, s.pk) for s in PulledStudy.objects.all()]
    # Then the pull fails with the reason, and no requested study is left waiting for ever:
    # each is done (stored whole) or failed with a reason, so the next pull requests it again
    assert done.status == "failed" and done.report["error"] == DEAD_WORKER, done.report
    assert all(s.status == "done" or s.detail for s in studies), [(s.status, s.detail) for s in studies]
    for study in studies:  # "done" is a promise that the periodic pull never fetches it again
        if study.status == "done":
            assert SeriesOrigin.objects.filter(study_uid=study.study_uid).exists(), study.study_uid
    storage_intact(
        "worker SIGKILL during a PACS pull",
        f"killed at progress {point:.2f}; pull failed ({DEAD_WORKER[:40]}...); studies "
        + ", ".join(s.status for s in studies),
    )


def test_worker_killed_during_a_seg_send(
    cast, tmp_path, orthanc, remote, start_worker, fault_broker, storage_intact
):
    import numpy as np
    import pydicom

    from core.models import Scan
    from pacs import pulls, services
    from pacs.models import PacsSend
    from pacs.tasks import pull_run
    from tests.faults.test_worker_faults import _settled, _swept
    from tests.pacs.test_remote_pacs import curate, segs_in_orthanc

    # Given a scan pulled from the PACS (in this process) with curated labels on every slice
    folder = make_series(tmp_path / "pacs", slices=80, size=128, seed=40, patient="MRN-0")
    orthanc.upload(folder)
    uid = pydicom.dcmread(next(folder.rglob("*.dcm")), stop_before_pixels=True).StudyInstanceUID

    pull_run.apply(args=[pulls.pull_start(actor=cast.manager, remote=remote, study_uids=[uid]).pk]).get()
    scan = Scan.objects.get()
    labels = np.zeros(scan.shape, dtype=np.uint8)
    labels[:, 30:70, 30:70] = 1
    labels[:, 80:100, 60:90] = 2
    curate(cast, scan, labels)
    worker = start_worker()
    delay = harness.kill_point("seg-send", 0.0, 0.4)
    with fault_broker():
        # When the worker is killed while it builds or sends the SEG, and comes back
        send = services.send_request(actor=cast.manager, scan=scan)

        def running():
            status = PacsSend.objects.values_list("status", flat=True).get(pk=send.pk)
            assert status in ("queued", "running"), (
                f"the send ended ({status}) before the kill: make it bigger"
            )
            return status == "running"

        harness.wait_for(running, 120, "the send to start", every=0.01)
        harness.time.sleep(delay)
        assert PacsSend.objects.get(pk=send.pk).status == "running", "the send ended before the kill"
        worker.kill()
        worker.start()
        lost = _settled(PacsSend, send.pk, ended=("sent", "failed"))

        # Then the send fails with the reason (the PACS may have its SEG: a person decides), and
        # sending again reaches the PACS
        again = services.send_request(actor=cast.manager, scan=scan)
        retried = _settled(PacsSend, again.pk, ended=("sent", "failed"))
    assert lost.status == "failed" and lost.detail == PacsSend.job_lost_reason, lost.detail
    assert _swept(worker, "pacs_send", [send.pk])
    assert retried.status == "sent", retried.detail
    segs = segs_in_orthanc(orthanc)
    assert retried.seg_sop_uid in {str(s.SOPInstanceUID) for s in segs}
    storage_intact(
        "worker SIGKILL during a SEG send",
        f"killed {delay:.2f}s into the send; it failed ({lost.detail[:60]}...); sent again: sent, "
        f"the PACS holds {len(segs)} SEG(s)",
    )

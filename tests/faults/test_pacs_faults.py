"""Issue #16 §2: SIGKILL the DICOM listener (manage.py dicom_listener, its own process group)
inside an association, at a seeded number of received instances; start it again; the sender
sends the series again. The half delivery is dropped, never imported; the series is stored
once, whole; verify_storage finds every stored file whole and owned."""

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


def test_listener_killed_during_an_association(cast, tmp_path, children, fault_logs, storage_intact):
    from core.models import Scan
    from imaging.models import ImportJob

    # Given the institution accepts HOSP_A, a 60-slice series, and the listener in its own process
    cast.institution.allowed_ae_titles = [SENDER_AE]
    cast.institution.save(update_fields=["allowed_ae_titles"])
    series = make_series(tmp_path / "send", slices=60, size=128, seed=3, patient="P-L")
    port = harness.free_port()
    listener = harness.Child(
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
        ],  # fmt: skip
        fault_logs,
        ready="DICOM listener CURATECT on",
    )
    children.append(listener)
    listener.start()
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

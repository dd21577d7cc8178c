"""The C-STORE receiver against dcmtk's storescu/echoscu (pacs/receiver.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.conf import settings
from pydicom.uid import MRImageStorage
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from core.models import Scan
from imaging.models import ImportJob
from pacs.models import SeriesOrigin
from tests.conftest import make_series
from tests.pacs.conftest import SENDER_AE, free_port, need, start_listener, storescu, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def phantom(tmp_path: Path, seed: int = 0, slices: int = 12) -> Path:
    return make_series(tmp_path / "phantoms", slices=slices, size=64, seed=seed, patient=f"PAT-{seed}")


def dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.dcm"))


def finished_jobs(n: int = 1, timeout: float = 60) -> list[ImportJob]:
    wait_for(
        lambda: ImportJob.objects.filter(status__in=["done", "failed"]).count() >= n,
        timeout,
        f"{n} finished import(s)",
    )
    return list(ImportJob.objects.order_by("pk"))


def test_echoscu_from_an_allowed_ae_title_succeeds(listener):
    result = subprocess.run(
        [need("echoscu", "dcmtk"), "-aet", SENDER_AE, "-aec", "CURATECT", "127.0.0.1", str(listener.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr


def test_an_unknown_calling_ae_title_is_rejected_and_nothing_is_stored(listener, tmp_path):
    folder = phantom(tmp_path)

    echo = subprocess.run(
        [need("echoscu", "dcmtk"), "-aet", "STRANGER", "-aec", "CURATECT", "127.0.0.1", str(listener.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    store = storescu(listener, folder, calling="STRANGER")

    assert echo.returncode != 0
    assert "Association Rejected" in echo.stderr + echo.stdout
    assert "Calling AE Title Not Recognized" in echo.stderr + echo.stdout
    assert store.returncode != 0
    time.sleep(0.5)
    assert not Scan.objects.exists() and not ImportJob.objects.exists()


def test_a_wrong_called_ae_title_is_rejected(listener):
    result = subprocess.run(
        [need("echoscu", "dcmtk"), "-aet", SENDER_AE, "-aec", "NOT_US", "127.0.0.1", str(listener.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stderr + result.stdout


def test_a_series_sent_with_storescu_becomes_one_pseudonymised_scan(listener, cast, tmp_path):
    folder = phantom(tmp_path)
    originals = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in dicom_files(folder)}

    result = storescu(listener, folder, options=("-R",))

    assert result.returncode == 0, result.stderr
    (job,) = finished_jobs()
    assert job.status == "done", job.report
    assert job.institution == cast.institution
    assert job.source == f"DICOM C-STORE from {SENDER_AE}@127.0.0.1" or job.source.startswith(
        f"DICOM C-STORE from {SENDER_AE}@127.0.0.1:"
    )
    assert job.report["received"]["instances"] == 12
    assert len(job.report["scans_created"]) == 1 and not job.report["rejected_files"]
    scan = Scan.objects.get(pk=job.report["scans_created"][0])
    assert scan.slices == 12 and scan.study.institution == cast.institution
    stored = pydicom.dcmread(Path(settings.MEDIA_ROOT) / scan.storage_dir / "00000.dcm")
    assert stored.PatientID != "PAT-0" and stored.PatientID == scan.study.patient.pseudonym
    assert stored.SOPInstanceUID not in originals
    # The hospital's own UIDs are kept (re-identifying data) to send labels back.
    origin = SeriesOrigin.objects.get(scan=scan)
    first = originals[origin.sop_uids[0]]
    assert origin.series_uid == first.SeriesInstanceUID and origin.study_uid == first.StudyInstanceUID
    assert set(origin.sop_uids) == set(originals) and origin.source == "dimse"
    assert origin.header["StudyDate"] == "20200315"
    assert listener.wait_idle(10)
    assert not any(listener.spool.rglob("*.dcm")), "the spool folder is removed after the import"


@pytest.mark.parametrize(
    ("tool", "propose", "syntax"),
    [
        ("dcmcjpls", "-xt", "1.2.840.10008.1.2.4.80"),  # JPEG-LS lossless
        ("dcmcjpeg", "-xs", "1.2.840.10008.1.2.4.70"),  # JPEG lossless, first-order prediction
        ("dcmcrle", "-xr", "1.2.840.10008.1.2.5"),  # RLE lossless
    ],
)
def test_compressed_transfer_syntaxes_are_accepted_and_decoded_losslessly(
    listener, tmp_path, tool, propose, syntax
):
    folder = phantom(tmp_path)
    compressed = tmp_path / "compressed"
    compressed.mkdir()
    binary = need(tool, "dcmtk")
    for path in dicom_files(folder):
        subprocess.run([binary, str(path), str(compressed / path.name)], check=True, timeout=30)
    assert str(pydicom.dcmread(next(compressed.iterdir())).file_meta.TransferSyntaxUID) == syntax

    # storescu proposes the compressed syntax first, so the files travel as they are.
    result = storescu(listener, compressed, options=("-R", propose))

    assert result.returncode == 0, result.stderr
    (job,) = finished_jobs()
    assert job.status == "done" and len(job.report["scans_created"]) == 1, job.report
    scan = Scan.objects.get(pk=job.report["scans_created"][0])
    volume = np.load(Path(settings.MEDIA_ROOT) / scan.storage_dir / "volume.npy")
    originals = sorted(
        (pydicom.dcmread(p) for p in dicom_files(folder)), key=lambda d: float(d.ImagePositionPatient[2])
    )
    expected = np.stack([d.pixel_array.astype(np.int32) + int(d.RescaleIntercept) for d in originals])
    np.testing.assert_array_equal(volume, expected)


def mr_file(tmp_path: Path, source: Path) -> Path:
    folder = tmp_path / "mr"
    folder.mkdir()
    ds = pydicom.dcmread(dicom_files(source)[0])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.Modality = "MR"
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "mr.dcm", enforce_file_format=True)
    return folder


def test_a_non_ct_sop_class_is_refused_at_negotiation_and_reported_with_the_ct_series(listener, tmp_path):
    folder = phantom(tmp_path)
    mr = mr_file(tmp_path, folder)

    # --no-halt: storescu goes on after the file it has no presentation context for.
    result = storescu(listener, folder, mr, options=("-R", "--no-halt"))

    assert "No presentation context for: (MR)" in result.stderr
    (job,) = finished_jobs()
    assert job.status == "done" and len(job.report["scans_created"]) == 1
    assert [r["name"] for r in job.report["refused_sop_classes"]] == ["MR Image Storage"]


def test_a_delivery_of_only_non_ct_leaves_a_report_of_what_was_refused(listener, cast, tmp_path):
    mr = mr_file(tmp_path, phantom(tmp_path))

    storescu(listener, mr, options=("-R",))

    (job,) = finished_jobs()
    # Nothing was imported: the job failed, with the reason (issue #12).
    assert job.institution == cast.institution and job.status == "failed"
    assert "only SOP classes that are not imported were sent (MR Image Storage)" in job.report["error"]
    assert job.report["files_seen"] == 0 and not job.report["scans_created"]
    (refused,) = job.report["refused_sop_classes"]
    assert (
        refused["sop_class"] == MRImageStorage and "refused at association negotiation" in refused["reason"]
    )


def test_a_ct_sop_class_instance_that_is_not_ct_is_accepted_and_reported(listener, tmp_path):
    """One that arrives anyway (CT Image Storage, but Modality MR) is listed in the report."""
    folder = phantom(tmp_path)
    odd = tmp_path / "odd"
    odd.mkdir()
    ds = pydicom.dcmread(dicom_files(folder)[0])
    ds.Modality = "MR"
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(odd / "odd.dcm", enforce_file_format=True)

    result = storescu(listener, odd, options=("-R",))

    assert result.returncode == 0, result.stderr
    (job,) = finished_jobs()
    assert job.status == "failed" and not job.report["scans_created"]  # nothing imported (issue #12)
    (rejected,) = job.report["rejected_files"]
    assert "not a CT image (modality MR)" in rejected["reason"]


def test_an_association_aborted_mid_series_leaves_nothing_half_imported(listener, tmp_path):
    folder = phantom(tmp_path, slices=16)
    datasets = [pydicom.dcmread(p) for p in dicom_files(folder)]
    ae = AE(ae_title=SENDER_AE)
    ae.add_requested_context(CTImageStorage, datasets[0].file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="CURATECT")
    assert assoc.is_established
    for ds in datasets[:8]:
        assert assoc.send_c_store(ds).Status == 0x0000

    assoc.abort()

    (job,) = finished_jobs()
    assert job.status == "failed"
    assert "aborted after 8 instance(s)" in job.report["error"]
    assert not Scan.objects.exists()
    assert listener.wait_idle(10)
    assert not any(listener.spool.rglob("*.dcm"))


def test_an_instance_sent_twice_in_one_association_is_stored_once(listener, tmp_path):
    folder = phantom(tmp_path, slices=10)
    datasets = [pydicom.dcmread(p) for p in dicom_files(folder)]
    ae = AE(ae_title=SENDER_AE)
    ae.add_requested_context(CTImageStorage, datasets[0].file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="CURATECT")
    assert assoc.is_established
    for ds in [*datasets, datasets[3]]:  # a retry of one instance, as a sender may do
        assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()

    (job,) = finished_jobs()
    assert job.status == "done" and len(job.report["scans_created"]) == 1, job.report
    scan = Scan.objects.get()
    assert scan.slices == 10
    assert scan.instances.count() == 10


def test_a_series_split_over_two_associations_is_imported_once_whole(listener, tmp_path):
    folder = phantom(tmp_path, slices=16)
    files = dicom_files(folder)
    first, second = tmp_path / "a", tmp_path / "b"
    for target, part in ((first, files[:8]), (second, files[8:])):
        target.mkdir()
        for path in part:
            (target / path.name).write_bytes(path.read_bytes())
    listener.quiet_seconds = 3  # the gap between the two deliveries must not end the series

    assert storescu(listener, first).returncode == 0
    assert storescu(listener, second).returncode == 0

    (job,) = finished_jobs()
    assert job.status == "done" and len(job.report["scans_created"]) == 1, job.report
    assert Scan.objects.get().slices == 16


def test_instances_are_prepared_by_worker_processes(sender_allowed, tmp_path):
    receiver = start_listener(tmp_path, workers=1)
    try:
        result = storescu(receiver, phantom(tmp_path), options=("-R",))
        (job,) = finished_jobs()
    finally:
        receiver.stop()

    assert result.returncode == 0, result.stderr
    assert job.status == "done" and len(job.report["scans_created"]) == 1, job.report


def test_with_celery_ingest_the_listener_spools_and_a_worker_imports(sender_allowed, tmp_path):
    from pacs.tasks import spool_import_run

    receiver = start_listener(tmp_path, ingest="celery")
    try:
        assert storescu(receiver, phantom(tmp_path), options=("-R",)).returncode == 0
        queued = wait_for(
            lambda: ImportJob.objects.filter(status="queued", report__has_key="spool").first(),
            30,
            "the queued import",
        )
        spool = Path(queued.report["spool"])
        assert len(list(spool.rglob("*.dcm"))) == 12

        spool_import_run.apply(args=[queued.pk]).get()
    finally:
        receiver.stop()

    job = ImportJob.objects.get(pk=queued.pk)
    assert job.status == "done" and len(job.report["scans_created"]) == 1, job.report
    assert job.report["received"]["instances"] == 12 and "spool" not in job.report
    assert not spool.exists()
    assert SeriesOrigin.objects.get().source == "dimse"


def test_after_a_restart_committed_series_are_imported_and_uncommitted_ones_dropped(sender_allowed, tmp_path):
    first = start_listener(tmp_path, quiet_seconds=3600)
    assert storescu(first, phantom(tmp_path), options=("-R",)).returncode == 0
    assert first.wait_idle(0.5) is False  # spooled, waiting for its quiet period
    first.stop()
    (series_folder,) = [p for p in (tmp_path / "spool" / str(sender_allowed.institution.pk)).iterdir()]
    half = series_folder / "deadbeef"  # an association that never ended with a release
    half.mkdir()
    (half / "x.dcm").write_bytes(b"half of a delivery")

    second = start_listener(tmp_path)
    try:
        (job,) = finished_jobs()
    finally:
        second.stop()

    assert job.status == "done" and len(job.report["scans_created"]) == 1, job.report
    assert job.report["received"]["recovered"] is True and job.report["received"]["instances"] == 12
    assert not half.exists()


def database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def test_manage_py_dicom_listener_serves_echo_and_store_and_stops_cleanly(sender_allowed, tmp_path):
    """The command as docker-compose runs it, on the test database, in its own process."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CURATECT_DATA_DIR": str(tmp_path / "data"),
        "CURATECT_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "CELERY_BROKER_URL": "memory://",
    }
    command = [
        sys.executable,
        "manage.py",
        "dicom_listener",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ae-title",
        "CURATECT",
        "--quiet-seconds",
        "0.3",
        "--workers",
        "0",
    ]
    process = subprocess.Popen(
        command, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for(lambda: _listening(port) or process.poll() is not None, 60, "the listener to start")
        echo = subprocess.run(
            [need("echoscu", "dcmtk"), "-aet", SENDER_AE, "-aec", "CURATECT", "127.0.0.1", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        store = subprocess.run(
            [
                need("storescu", "dcmtk"),
                "-aet",
                SENDER_AE,
                "-aec",
                "CURATECT",
                "+sd",
                "+r",
                "127.0.0.1",
                str(port),
                str(phantom(tmp_path)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert echo.returncode == 0 and store.returncode == 0, echo.stderr + store.stderr
        (job,) = finished_jobs()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        print(output)

    assert job.status == "done" and len(job.report["scans_created"]) == 1, job.report
    assert process.returncode == 0, output
    assert f"DICOM listener CURATECT on 127.0.0.1:{port}" in output


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_arrivals_join_the_intake_campaign_when_one_is_configured(cast, settings):
    from pacs.intake import intake_campaign_id

    assert intake_campaign_id(cast.institution) is None
    settings.CURATECT_INTAKE_CAMPAIGN = "covid19"
    assert intake_campaign_id(cast.institution) == cast.campaign.pk
    assert intake_campaign_id(cast.other_institution) is None  # not theirs, not shared with them

"""Issue #12 item 3: a series or archive is refused whole, never stored in part, and every
import job ends done or failed with a reason a person can act on.

Imports go through the upload API and the ingest task (run eagerly through the same service).
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from celery.signals import worker_ready

from core.models import AuditEvent, Instance, Scan
from demo.phantom import write_ct_series
from imaging.models import ImportJob
from tests.conftest import make_series

SPACING = (0.8, 0.8, 2.5)


def ct_series(folder: Path, slices: int = 4, *, patient: str = "INT-1", **kw) -> list[Path]:
    """A small CT series, IM00001.dcm… in z order, 2.5 mm apart (SliceThickness 2.5)."""
    hu = (np.arange(slices * 16 * 16, dtype=np.int16).reshape(slices, 16, 16) % 400) - 1000
    return write_ct_series(
        hu,
        folder,
        spacing=SPACING,
        origin=(-6.0, -6.0, 10.0),
        patient_id=patient,
        patient_name=f"TEST^{patient}",
        slice_order="ascending",
        **kw,
    )


def upload(api, cast, paths: list[Path], django_capture_on_commit_callbacks, **fields) -> dict:
    """POST the files to /api/imports/ as the data manager, run the task, return the job."""
    from platform_core.celery import app

    files = []
    for p in paths:
        buf = io.BytesIO(p.read_bytes())
        buf.name = p.name
        files.append(buf)
    api.force_authenticate(cast.manager)
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post("/api/imports/", {"files": files, **fields}, format="multipart")
    finally:
        app.conf.task_always_eager = False
    assert response.status_code == 202, response.content
    return api.get(f"/api/imports/{response.json()['id']}/").json()


def zipped(tmp_path: Path, entries: dict[str, bytes], name: str = "series.zip") -> Path:
    archive = tmp_path / name
    with zipfile.ZipFile(archive, "w") as z:
        for entry, data in entries.items():
            z.writestr(entry, data)
    return archive


def nothing_stored(settings) -> bool:
    scans = Path(settings.MEDIA_ROOT) / "scans"
    files = [p for p in scans.rglob("*") if p.is_file()] if scans.exists() else []
    return Scan.objects.count() == 0 and Instance.objects.count() == 0 and files == []


# --- damaged and missing slices --------------------------------------------------------------


def test_a_truncated_slice_refuses_its_series_naming_the_file(
    cast, api, tmp_path, settings, django_capture_on_commit_callbacks
):
    paths = ct_series(tmp_path / "s", slices=5)
    ds = pydicom.dcmread(paths[2])
    ds.PixelData = ds.PixelData[:100]
    ds.save_as(paths[2])

    job = upload(api, cast, paths, django_capture_on_commit_callbacks)

    assert job["status"] == "failed", job
    (refused,) = job["report"]["rejected_series"]
    assert "00002-IM00003.dcm" in refused["reason"] and "truncated" in refused["reason"]
    assert "refused whole" in refused["reason"] and "import_incomplete" in refused["reason"]
    assert "nothing was imported" in job["report"]["error"]
    assert nothing_stored(settings)


def test_a_missing_middle_slice_of_a_short_series_is_refused(
    cast, api, tmp_path, settings, django_capture_on_commit_callbacks
):
    """The issue's case: 4 slices, s002 lost; the median step (3.75 mm) would hide the hole."""
    paths = ct_series(tmp_path / "s", slices=4)
    del paths[1]

    job = upload(api, cast, paths, django_capture_on_commit_callbacks)

    assert job["status"] == "failed", job
    (refused,) = job["report"]["rejected_series"]
    assert "slice(s) missing" in refused["reason"]
    assert "5.0 mm apart where the series' spacing is 2.5 mm" in refused["reason"]
    assert nothing_stored(settings)


def test_gaps_are_judged_against_the_spacing_the_headers_state(
    cast, api, tmp_path, settings, django_capture_on_commit_callbacks
):
    """Every other slice lost: the positions are evenly 5 mm apart, but the headers say 2.5 mm."""
    paths = ct_series(tmp_path / "s", slices=7)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.SpacingBetweenSlices = "2.5"
        ds.save_as(p)

    job = upload(api, cast, paths[::2], django_capture_on_commit_callbacks)

    assert job["status"] == "failed", job
    assert "slice(s) missing" in job["report"]["rejected_series"][0]["reason"]
    assert nothing_stored(settings)


def test_import_incomplete_keeps_the_gap_in_the_geometry(
    cast, api, tmp_path, settings, django_capture_on_commit_callbacks
):
    paths = ct_series(tmp_path / "s", slices=4)
    del paths[1]

    job = upload(api, cast, paths, django_capture_on_commit_callbacks, import_incomplete="true")

    assert job["status"] == "done", job
    assert job["options"] == {"import_incomplete": True}
    scan = Scan.objects.get()
    assert scan.slices == 3
    assert scan.spacing[2] == pytest.approx(2.5)  # the regular step, not the 3.75 mm median
    assert scan.slice_positions == pytest.approx([0.0, 5.0, 7.5])
    assert scan.gaps == [{"after_index": 0, "step_mm": 5.0, "expected_mm": 2.5}]
    (incomplete,) = job["report"]["incomplete_series"]
    assert incomplete["scan"] == scan.pk and incomplete["gaps"] == scan.gaps
    api.force_authenticate(cast.manager)
    assert api.get(f"/api/scans/{scan.pk}/").json()["slice_positions"] == pytest.approx([0.0, 5.0, 7.5])
    events = AuditEvent.objects.filter(object_type="importjob", object_id=str(job["id"]))
    assert {e.action: e.details.get("import_incomplete") for e in events} == {
        "import_queued": True,
        "import": True,
    }


def test_import_incomplete_stores_the_rest_of_a_series_with_a_damaged_slice(
    cast, api, tmp_path, django_capture_on_commit_callbacks
):
    paths = ct_series(tmp_path / "s", slices=5)
    ds = pydicom.dcmread(paths[2])
    ds.PixelData = ds.PixelData[:100]
    ds.save_as(paths[2])

    job = upload(api, cast, paths, django_capture_on_commit_callbacks, import_incomplete=True)

    assert job["status"] == "done", job
    scan = Scan.objects.get()
    assert scan.slices == 4 and scan.slice_positions == pytest.approx([0.0, 2.5, 7.5, 10.0])
    (incomplete,) = job["report"]["incomplete_series"]
    assert incomplete["missing_files"] == ["00002-IM00003.dcm"]


def test_a_regular_series_keeps_a_uniform_geometry(cast, api, tmp_path, django_capture_on_commit_callbacks):
    job = upload(api, cast, ct_series(tmp_path / "s", slices=4), django_capture_on_commit_callbacks)

    assert job["status"] == "done", job
    scan = Scan.objects.get()
    assert scan.gaps == [] and scan.slice_positions == [] and scan.spacing[2] == pytest.approx(2.5)


def test_a_dicom_file_with_an_unreadable_header_refuses_the_import(
    cast, api, tmp_path, settings, django_capture_on_commit_callbacks
):
    """It has the DICM marker but nothing of its header can be read: it may be a slice of any
    series, so no series of the import is stored unless the data manager imports anyway."""
    paths = ct_series(tmp_path / "s", slices=4)
    broken = tmp_path / "broken.dcm"
    raw = paths[0].read_bytes()
    meta_end = raw.index(b"\x08\x00", 140)  # the first data element after the file meta
    broken.write_bytes(raw[:meta_end] + b"\x08\x00\x16\x00UI\xff\x7f" + b"\x00" * 40)

    job = upload(api, cast, [*paths, broken], django_capture_on_commit_callbacks)

    assert job["status"] == "failed", job
    assert "broken.dcm looks like DICOM but cannot be read" in job["report"]["rejected_series"][0]["reason"]
    assert nothing_stored(settings)

    anyway = upload(api, cast, [*paths, broken], django_capture_on_commit_callbacks, import_incomplete=True)

    assert anyway["status"] == "done" and Scan.objects.get().slices == 4
    assert anyway["report"]["incomplete_series"][0]["unreadable_files"] == ["00004-broken.dcm"]


def test_a_file_that_is_not_dicom_beside_a_series_does_not_refuse_it(
    cast, api, tmp_path, django_capture_on_commit_callbacks
):
    paths = ct_series(tmp_path / "s", slices=4)
    readme = tmp_path / "README.txt"
    readme.write_text("exported by the PACS")

    job = upload(api, cast, [*paths, readme], django_capture_on_commit_callbacks)

    assert job["status"] == "done" and len(job["report"]["scans_created"]) == 1
    assert "not DICOM" in job["report"]["rejected_files"][0]["reason"]


def test_an_import_in_which_every_file_was_refused_fails_with_the_reasons(
    cast, api, tmp_path, settings, django_capture_on_commit_callbacks
):
    paths = ct_series(tmp_path / "s", slices=3)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.Modality, ds.SOPClassUID = "MR", "1.2.840.10008.5.1.4.1.1.4"
        ds.save_as(p)

    job = upload(api, cast, paths, django_capture_on_commit_callbacks)

    assert job["status"] == "failed", job
    assert "nothing was imported" in job["report"]["error"]
    assert "3 file(s): not a CT image (modality MR)" in job["report"]["error"]
    assert nothing_stored(settings)


# --- archives ----------------------------------------------------------------------------------


@pytest.mark.parametrize("evil", ["../../etc/evil.dcm", "/etc/evil.dcm", "C:/evil.dcm", "C:evil.dcm"])
def test_a_zip_with_an_entry_that_escapes_its_folder_is_refused_whole(
    cast, api, tmp_path, settings, evil, django_capture_on_commit_callbacks
):
    paths = ct_series(tmp_path / "s", slices=4)
    archive = zipped(tmp_path, {**{f"series/{p.name}": p.read_bytes() for p in paths}, evil: b"x"})

    job = upload(api, cast, [archive], django_capture_on_commit_callbacks)

    assert job["status"] == "failed", job
    assert "escapes the archive's folder" in job["report"]["error"] and evil in job["report"]["error"]
    assert nothing_stored(settings)
    assert not (tmp_path.parent / "etc" / "evil.dcm").exists()


def test_a_zip_with_a_crc_error_fails_the_job_and_leaves_nothing_unpacked(
    cast, api, tmp_path, settings, django_capture_on_commit_callbacks
):
    paths = ct_series(tmp_path / "s", slices=4)
    archive = zipped(tmp_path, {p.name: p.read_bytes() for p in paths})
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as z:
        info = z.infolist()[2]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 2000] ^= 0xFF  # stored (not compressed): the CRC no longer matches
    archive.write_bytes(bytes(data))

    job = upload(api, cast, [archive], django_capture_on_commit_callbacks)

    assert job["status"] == "failed", job
    assert "Bad CRC-32" in job["report"]["error"] and "refused whole" in job["report"]["error"]
    assert nothing_stored(settings)
    work = Path(settings.DATA_DIR) / "work"
    assert not work.exists() or list(work.rglob("*")) == []


def test_an_unexpected_error_fails_the_job_with_its_reason(cast, tmp_path, settings):
    from imaging.ingest.service import import_job_run

    # A file where the scans folder should be: storing cannot even start.
    Path(settings.MEDIA_ROOT).mkdir(parents=True, exist_ok=True)
    (Path(settings.MEDIA_ROOT) / "scans").write_text("not a folder")
    folder = tmp_path / "s"
    ct_series(folder, slices=3)
    job = ImportJob.objects.create(institution=cast.institution, source=str(folder))

    job = import_job_run(job)

    assert job.status == ImportJob.Status.FAILED
    assert "failed unexpectedly" in job.report["error"]


# --- cancelling, and the sweep at worker start ---------------------------------------------------


def test_cancelling_a_queued_import_deletes_its_raw_files(cast, api, tmp_path, settings):
    paths = ct_series(tmp_path / "s", slices=3)
    api.force_authenticate(cast.manager)
    files = []
    for p in paths:
        files.append(io.BytesIO(p.read_bytes()))
        files[-1].name = p.name
    job_id = api.post("/api/imports/", {"files": files}, format="multipart").json()["id"]
    upload_dir = Path(ImportJob.objects.get(pk=job_id).source)
    assert upload_dir.is_dir()

    response = api.post(f"/api/imports/{job_id}/cancel/")

    assert response.status_code == 200 and response.json()["status"] == "failed"
    assert "cancelled by manager" in response.json()["report"]["error"]
    assert not upload_dir.exists()
    assert api.post(f"/api/imports/{job_id}/cancel/").status_code == 409
    api.force_authenticate(cast.outsider)
    assert api.post(f"/api/imports/{job_id}/cancel/").status_code == 404

    from imaging.tasks import import_run

    import_run.apply(args=[job_id])  # the queued message still arrives: nothing happens
    assert ImportJob.objects.get(pk=job_id).status == "failed" and Scan.objects.count() == 0


class _Consumer:
    hostname = "celery@ingest-1"


def test_a_starting_worker_fails_what_it_left_running_and_sweeps_leftovers(cast, tmp_path, settings):
    from imaging.ingest.service import uploads_root, work_root
    from pacs.intake import spool_root

    def folder(path: Path, *, old: bool = False) -> Path:
        path.mkdir(parents=True)
        (path / "raw.dcm").write_bytes(b"identifying")
        if old:
            for p in (path / "raw.dcm", path):
                os.utime(p, (time.time() - 7200, time.time() - 7200))
        return path

    dead_upload = folder(uploads_root() / "dead")
    dead = ImportJob.objects.create(
        institution=cast.institution, source=str(dead_upload), status="running", worker=_Consumer.hostname
    )
    other_worker = ImportJob.objects.create(
        institution=cast.institution,
        source=str(folder(uploads_root() / "elsewhere")),
        status="running",
        worker="celery@ingest-2",
    )
    queued = ImportJob.objects.create(
        institution=cast.institution, source=str(folder(uploads_root() / "queued"))
    )
    orphan_old = folder(uploads_root() / "orphan-old", old=True)
    orphan_new = folder(uploads_root() / "orphan-new")
    unzipped_dead = folder(work_root() / f"job-{dead.pk}")
    unzipped_queued = folder(work_root() / f"job-{queued.pk}")
    pull_dead = folder(spool_root() / f"pull-{dead.pk}")
    stow_old = folder(spool_root() / "stow-0123", old=True)
    stow_new = folder(spool_root() / "stow-4567")
    listener = folder(spool_root() / "1" / "series-0")  # the listener's own: left to it

    worker_ready.send(sender=_Consumer())

    dead.refresh_from_db()
    assert dead.status == "failed" and "worker running this import stopped" in dead.report["error"]
    assert AuditEvent.objects.filter(action="import", object_id=str(dead.pk), to_state="failed").exists()
    other_worker.refresh_from_db()
    queued.refresh_from_db()
    assert other_worker.status == "running" and queued.status == "queued"
    gone = [dead_upload, orphan_old, unzipped_dead, pull_dead, stow_old]
    kept = [Path(other_worker.source), Path(queued.source), orphan_new, unzipped_queued, stow_new, listener]
    assert [p for p in gone if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []


def test_the_upload_of_a_finished_job_is_deleted(cast, api, tmp_path, django_capture_on_commit_callbacks):
    from imaging.ingest.service import uploads_root

    ok = upload(api, cast, ct_series(tmp_path / "ok", slices=3), django_capture_on_commit_callbacks)
    bad = upload(api, cast, [zipped(tmp_path, {"../x.dcm": b"x"})], django_capture_on_commit_callbacks)

    assert ok["status"] == "done" and bad["status"] == "failed"
    assert list(uploads_root().iterdir()) == []


def test_a_server_folder_imported_by_the_command_is_not_deleted(cast, tmp_path):
    from django.core.management import call_command

    folder = make_series(tmp_path, slices=4, size=32)

    call_command("import_dicom", str(folder), "--institution", cast.institution.slug, stdout=io.StringIO())

    assert Scan.objects.count() == 1 and any(folder.rglob("*.dcm"))


def test_cancelling_a_running_import_stops_it_before_the_next_series(cast, tmp_path):
    from imaging.ingest.service import import_job_cancel, import_job_run

    folder = tmp_path / "two"
    ct_series(folder / "a", slices=3, patient="INT-A")
    ct_series(folder / "b", slices=3, patient="INT-B")
    job = ImportJob.objects.create(institution=cast.institution, source=str(folder), created_by=cast.manager)

    def cancel_on_first_step(fraction: float, message: str) -> None:
        if ImportJob.objects.get(pk=job.pk).status == "running":
            import_job_cancel(actor=cast.manager, job=ImportJob.objects.get(pk=job.pk))

    job = import_job_run(job, cancel_on_first_step)

    assert job.status == "failed" and job.report["error"] == "cancelled by manager"
    assert Scan.objects.count() == 0
    assert AuditEvent.objects.filter(action="import_cancel", object_id=str(job.pk)).count() == 1
    assert not AuditEvent.objects.filter(action="import", object_id=str(job.pk)).exists()

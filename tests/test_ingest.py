"""DICOM ingest: real files, phantoms, pseudonymisation in stored files, every bad input."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from core.models import Instance, PatientPseudonym, Scan, Study
from imaging.ingest.collect import ArchiveRejected
from imaging.ingest.service import ingest_path
from imaging.models import ImportJob
from tests.conftest import lung1_file, make_series, truth_of
from tests.phi import assert_no_phi

PYDICOM_DIRTESTS = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"


def stored_files(media: Path) -> list[Path]:
    return (
        sorted(p for p in (media / "scans").rglob("*") if p.is_file()) if (media / "scans").exists() else []
    )


def test_phantom_series_is_stored_sorted_with_its_volume(cast, tmp_path, settings):
    from demo.phantom import load_ground_truth

    folder = make_series(tmp_path, slices=20, size=48, seed=3)
    report = ingest_path(folder, institution=cast.institution, campaign_id=cast.campaign.pk)

    assert report.rejected_files == [] and report.rejected_series == []
    scan = Scan.objects.get(pk=report.scans_created[0])
    assert scan.shape == (20, 48, 48)
    volume = np.load(Path(settings.MEDIA_ROOT) / scan.storage_dir / "volume.npy")
    truth = load_ground_truth(truth_of(folder))
    assert volume.shape == truth.lesions.shape
    # Lesion voxels of the ground truth sit where the stored volume has lesion-like HU.
    assert np.median(volume[truth.lesions == 2]) > -300
    assert np.median(volume[truth.lungs > 0]) < -600
    positions = [
        float(
            pydicom.dcmread(Path(settings.MEDIA_ROOT) / scan.storage_dir / i.file_name).ImagePositionPatient[
                2
            ]
        )
        for i in scan.instances.order_by("index")
    ]
    assert positions == sorted(positions)
    assert cast.campaign.campaign_scans.filter(scan=scan).exists()


def test_importing_the_same_files_again_creates_nothing(cast, tmp_path, settings):
    folder = make_series(tmp_path, slices=8, size=32)
    first = ingest_path(folder, institution=cast.institution)
    files_before = stored_files(Path(settings.MEDIA_ROOT))

    second = ingest_path(folder, institution=cast.institution)

    assert len(first.scans_created) == 1
    assert second.scans_created == [] and second.scans_existing == first.scans_created
    assert Scan.objects.count() == 1 and Instance.objects.count() == 8 and Study.objects.count() == 1
    assert stored_files(Path(settings.MEDIA_ROOT)) == files_before


def test_no_identifying_value_survives_in_stored_files(cast, tmp_path, settings):
    folder = make_series(tmp_path, slices=4, size=32, patient="MRN-998877", extra_phi=True)
    original = pydicom.dcmread(next(p for p in folder.rglob("*") if p.suffix != ".npz" and p.is_file()))
    forbidden = [
        "MRN-998877",
        "DOE",
        str(original.StudyInstanceUID),
        str(original.SOPInstanceUID),
        str(original.StudyDate),
        str(original.PatientBirthDate),
    ]

    ingest_path(folder, institution=cast.institution)

    files = [p for p in stored_files(Path(settings.MEDIA_ROOT)) if p.suffix == ".dcm"]
    assert len(files) == 4
    for path in files:
        ds = pydicom.dcmread(path)
        assert assert_no_phi(ds, forbidden) == []
        raw = path.read_bytes()
        for needle in forbidden:
            assert needle.encode() not in raw, needle
        assert ds.PatientIdentityRemoved == "YES"
    patient = PatientPseudonym.objects.get()
    assert patient.original_patient_id == "MRN-998877"  # kept only in the re-identification table
    assert ds.PatientID == patient.pseudonym


def test_same_patient_gets_the_same_pseudonym_across_imports(cast, tmp_path):
    ingest_path(
        make_series(tmp_path / "a", slices=4, size=32, seed=1, patient="P-7"), institution=cast.institution
    )
    ingest_path(
        make_series(tmp_path / "b", slices=4, size=32, seed=2, patient="P-7"), institution=cast.institution
    )
    ingest_path(
        make_series(tmp_path / "c", slices=4, size=32, seed=3, patient="P-8"), institution=cast.institution
    )

    assert Scan.objects.count() == 3
    assert PatientPseudonym.objects.count() == 2
    p7 = PatientPseudonym.objects.get(original_patient_id="P-7")
    assert p7.studies.count() == 2


def test_pydicom_real_series_stored_and_bad_members_rejected_with_reasons(cast):
    report = ingest_path(PYDICOM_DIRTESTS, institution=cast.institution)

    reasons = " | ".join(r["reason"] for r in report.rejected_files)
    assert "not a CT image (modality MR)" in reasons
    assert "not a CT image (modality CR)" in reasons
    assert "not DICOM" in reasons  # the README files
    series_reasons = " | ".join(r["reason"] for r in report.rejected_series)
    assert "different orientation" in series_reasons  # CT2N: two slices in different planes
    assert "slice(s) missing" in series_reasons  # 77654033/CT2 jumps 200 mm: refused whole
    stored = Scan.objects.filter(pk__in=report.scans_created)
    assert sorted(s.slices for s in stored) == [5]

    anyway = ingest_path(PYDICOM_DIRTESTS, institution=cast.institution, import_incomplete=True)

    with_gap = Scan.objects.get(pk__in=anyway.scans_created, slices=4)
    assert with_gap.gaps and with_gap.gaps[0]["after_index"] == 0


def test_pydicom_ct_small_single_slice_is_refused_with_a_reason(cast, tmp_path):
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ct.dcm")
    report = ingest_path(tmp_path, institution=cast.institution)
    assert report.scans_created == []
    assert "at least 2 slices" in report.rejected_series[0]["reason"]


def test_real_chest_ct_from_lung1_round_trips_voxel_for_voxel(cast, tmp_path, settings):
    import SimpleITK as sitk

    from demo.phantom import nrrd_to_dicom_series

    nrrd = lung1_file("lung1_image.nrrd")
    nrrd_to_dicom_series(nrrd, tmp_path / "lung1", patient_id="LUNG1", patient_name="LUNG^ONE")

    report = ingest_path(tmp_path / "lung1", institution=cast.institution)

    scan = Scan.objects.get(pk=report.scans_created[0])
    volume = np.load(Path(settings.MEDIA_ROOT) / scan.storage_dir / "volume.npy")
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(nrrd)))
    assert np.array_equal(volume, np.clip(expected, -1024, None))
    assert scan.spacing == pytest.approx([*sitk.ReadImage(str(nrrd)).GetSpacing()], abs=1e-3)


def _phantom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".npz")


def test_mixed_geometry_rejects_the_series_and_stores_nothing(cast, tmp_path, settings):
    folder = make_series(tmp_path, slices=6, size=32)
    odd = pydicom.dcmread(_phantom_files(folder)[2])
    odd.PixelSpacing = [0.9, 0.9]
    odd.save_as(_phantom_files(folder)[2])

    report = ingest_path(folder, institution=cast.institution)

    assert report.scans_created == []
    assert "mixed geometry" in report.rejected_series[0]["reason"]
    assert Scan.objects.count() == 0 and Instance.objects.count() == 0 and Study.objects.count() == 0
    assert stored_files(Path(settings.MEDIA_ROOT)) == []


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("text", "not DICOM"),
        ("mr", "not a CT image (modality MR)"),
        ("no_pixels", "missing pixel data"),
        ("truncated", "truncated"),
        ("transfer_syntax", "unsupported transfer syntax"),
    ],
)
def test_each_bad_file_is_rejected_with_a_reason(cast, tmp_path, damage, reason):
    folder = make_series(tmp_path, slices=5, size=32)
    # The middle slice: wherever it is damaged, no end slice can hide the hole.
    by_position = sorted(
        _phantom_files(folder), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2])
    )
    victim = by_position[2]
    if damage == "text":
        victim.write_text("this is a radiology report, not an image")
    else:
        ds = pydicom.dcmread(victim)
        if damage == "mr":
            ds.Modality = "MR"
            ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        elif damage == "no_pixels":
            del ds.PixelData
        elif damage == "truncated":
            ds.PixelData = ds.PixelData[:100]
        elif damage == "transfer_syntax":
            # A vendor's private transfer syntax: no installed decoder knows it.
            ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.9.9999.1"
        ds.save_as(victim)

    report = ingest_path(folder, institution=cast.institution)

    assert [r["reason"] for r in report.rejected_files if reason in r["reason"]], report.rejected_files
    # The series is refused whole (issue #12): naming the damaged file, or the hole it leaves.
    (refused,) = report.rejected_series
    assert victim.name in refused["reason"] or "slice(s) missing" in refused["reason"], refused
    assert report.scans_created == [] and Scan.objects.count() == 0


def test_zip_entries_that_escape_the_target_folder_are_refused(cast, tmp_path):
    folder = make_series(tmp_path, slices=4, size=32)
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in _phantom_files(folder):
            z.write(p, f"series/{p.name}")
        z.writestr("../../etc/evil.dcm", b"x")

    with pytest.raises(ArchiveRejected, match="escapes the archive's folder"):
        ingest_path(archive, institution=cast.institution)

    assert Scan.objects.count() == 0  # refused whole (issue #12)
    assert not (tmp_path.parent / "etc" / "evil.dcm").exists()


def test_over_size_archive_fails_the_job_and_stores_nothing(cast, tmp_path, settings):
    from imaging.ingest.service import import_job_run

    settings.INGEST_MAX_ARCHIVE_BYTES = 10_000
    folder = make_series(tmp_path, slices=4, size=32)
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for p in _phantom_files(folder):
            z.write(p, p.name)
    job = ImportJob.objects.create(institution=cast.institution, source=str(archive))

    job = import_job_run(job)

    assert job.status == ImportJob.Status.FAILED
    assert "over the limit" in job.report["error"]
    assert Scan.objects.count() == 0


def test_upload_api_imports_through_the_ingest_task(cast, api, tmp_path, django_capture_on_commit_callbacks):
    from platform_core.celery import app

    folder = make_series(tmp_path, slices=4, size=32)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in _phantom_files(folder):
            z.write(p, p.name)
    buf.seek(0)
    buf.name = "series.zip"
    api.force_authenticate(cast.manager)
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post("/api/imports/", {"files": [buf], "campaign": "covid19"}, format="multipart")
    finally:
        app.conf.task_always_eager = False

    assert response.status_code == 202, response.content
    job = api.get(f"/api/imports/{response.json()['id']}/").json()
    assert job["status"] == "done" and job["progress"] == 1.0
    assert len(job["report"]["scans_created"]) == 1


def test_only_data_managers_import(cast, api, tmp_path):
    api.force_authenticate(cast.annotator)
    response = api.post("/api/imports/", {"files": [io.BytesIO(b"x")]}, format="multipart")
    assert response.status_code == 403

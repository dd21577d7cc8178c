"""Issue #12 item 2: after an import — done or failed — no identifying value is left in any
file of the data folder or the media folder (raw uploads, unpacked archives, spools).

The series carries PHI everywhere real archives leave it: names, IDs, dates, UIDs, nested
sequences and private tags. It goes through the real upload API and the ingest task (run
eagerly, through the same service as the worker), then every file is read byte by byte.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import pydicom
import pytest

from core.models import PatientPseudonym, Scan
from tests.conftest import make_series

PATIENT_ID = "MRN-PHI-4711"
SURNAME = "QUIRINIUS"


def phi_series(tmp_path: Path) -> tuple[list[Path], list[str]]:
    """A PHI-laden phantom series (files in z order) and the identifying values it holds."""
    folder = make_series(
        tmp_path, slices=4, size=32, patient=PATIENT_ID, extra_phi=True, accession="ACC-PHI-998877"
    )
    paths = sorted(
        (p for p in folder.rglob("*.dcm")), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2])
    )
    ds = pydicom.dcmread(paths[0])
    for p in paths:  # a surname no phantom or pixel data would hold by chance
        d = pydicom.dcmread(p)
        d.PatientName = f"{SURNAME}^JANE"
        d.save_as(p)
    private = ds.private_block(0x0011, "SYNTHGH PACS 1.0")
    nested = ds.OtherPatientIDsSequence[0]
    forbidden = [
        PATIENT_ID,
        SURNAME,
        "ACC-PHI-998877",
        str(ds.PatientBirthDate),
        str(ds.StudyDate),
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
        *(str(pydicom.dcmread(p).SOPInstanceUID) for p in paths),
        str(ds.FrameOfReferenceUID),
        str(ds.PatientAddress),
        str(nested.PatientID),  # inside a sequence
        str(private[0x02].value),  # a private tag: the MRN again, under a vendor's creator
        str(private[0x03].value),
    ]
    return paths, sorted(set(v for v in forbidden if v))


def upload(api, cast, files: list[tuple[str, bytes]], capture) -> dict:
    from platform_core.celery import app

    bodies = []
    for name, data in files:
        buf = io.BytesIO(data)
        buf.name = name
        bodies.append(buf)
    api.force_authenticate(cast.manager)
    app.conf.task_always_eager = True
    try:
        with capture(execute=True):
            response = api.post("/api/imports/", {"files": bodies}, format="multipart")
    finally:
        app.conf.task_always_eager = False
    assert response.status_code == 202, response.content
    return api.get(f"/api/imports/{response.json()['id']}/").json()


def files_holding(roots: list[Path], forbidden: list[str]) -> dict[str, list[str]]:
    """Every file under `roots` that holds an identifying value, with the values it holds."""
    found: dict[str, list[str]] = {}
    for root in roots:
        for path in (p for p in root.rglob("*") if p.is_file()):
            raw = path.read_bytes()
            hits = [v for v in forbidden if v.encode() in raw]
            if hits:
                found[str(path)] = hits
    return found


def unzip_leftovers() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("curatect-unzip-*"))


@pytest.mark.parametrize("packed", ["files", "zip"])
def test_a_successful_import_leaves_no_identifying_value_on_disk(
    cast, api, tmp_path, settings, packed, django_capture_on_commit_callbacks
):
    paths, forbidden = phi_series(tmp_path / "in")
    files = [(p.name, p.read_bytes()) for p in paths]
    if packed == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name, data in files:
                z.writestr(f"{SURNAME}/{name}", data)
        files = [("export.zip", buf.getvalue())]
    before = unzip_leftovers()

    job = upload(api, cast, files, django_capture_on_commit_callbacks)

    assert job["status"] == "done", job
    scan = Scan.objects.get()
    assert scan.slices == 4
    stored = list((Path(settings.MEDIA_ROOT) / scan.storage_dir).glob("*.dcm"))
    assert len(stored) == 4  # the scan is there, so the scan below really read its files
    roots = [Path(settings.DATA_DIR), Path(settings.MEDIA_ROOT)]
    assert files_holding(roots, forbidden) == {}
    assert unzip_leftovers() <= before
    # Kept only where re-identification is meant to happen: the pseudonym table.
    assert PatientPseudonym.objects.get().original_patient_id == PATIENT_ID


@pytest.mark.parametrize("failure", ["damaged_slice", "crc_error"])
def test_a_failed_import_leaves_no_identifying_value_on_disk(
    cast, api, tmp_path, settings, failure, django_capture_on_commit_callbacks
):
    paths, forbidden = phi_series(tmp_path / "in")
    if failure == "damaged_slice":
        ds = pydicom.dcmread(paths[1])
        ds.PixelData = ds.PixelData[:64]
        ds.save_as(paths[1])
        files = [(p.name, p.read_bytes()) for p in paths]
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for p in paths:
                z.writestr(f"{SURNAME}/{p.name}", p.read_bytes())
        data = bytearray(buf.getvalue())
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
            info = z.infolist()[-1]
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        data[start + 1500] ^= 0xFF  # the last entry's CRC fails after the others were unpacked
        files = [("export.zip", bytes(data))]
    before = unzip_leftovers()

    job = upload(api, cast, files, django_capture_on_commit_callbacks)

    assert job["status"] == "failed", job
    assert Scan.objects.count() == 0
    roots = [Path(settings.DATA_DIR), Path(settings.MEDIA_ROOT)]
    assert files_holding(roots, forbidden) == {}
    assert unzip_leftovers() <= before

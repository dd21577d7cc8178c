"""The fast paths of ingest (#16 §5) write what the slow ones wrote.

- The staged (pseudonymised) file is written with the elements pseudonymisation left untouched
  copied from the bytes received (reader.staged_chunks): it must be byte for byte what pydicom's
  save_as writes for the same dataset, in every transfer syntax.
- The volume is read from the staged files' pixel data (plus the intercept) instead of a second
  copy of the HU: it must equal the HU that the stored files decode to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from core.models import Scan
from imaging import pseudonymise as pseudo
from imaging.ingest.reader import prepare_slice, read_slice, staged_chunks
from imaging.ingest.service import ingest_path
from tests.conftest import make_series

KEY = b"speed-path-test-key"
PATIENT = pseudo.PatientKey("CT-TESTPSEUDO", -400)


def _reencoded(source: Path, out: Path, syntax: str) -> Path:
    # pydicom converts the encoding (not the pixel bytes: their values do not matter here).
    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = syntax
    pydicom.dcmwrite(
        out, ds, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=syntax != ExplicitVRBigEndian
    )
    return out


def _sources(tmp_path: Path) -> list[Path]:
    phantom = sorted(make_series(tmp_path / "phantom", slices=3, size=32, seed=5).rglob("*.dcm"))[0]
    ct_small = Path(get_testdata_file("CT_small.dcm"))
    return [
        phantom,
        ct_small,
        _reencoded(phantom, tmp_path / "implicit.dcm", ImplicitVRLittleEndian),
        _reencoded(ct_small, tmp_path / "big-endian.dcm", ExplicitVRBigEndian),
    ]


@pytest.mark.parametrize("which", ["phantom", "CT_small", "implicit VR", "big endian"])
def test_the_staged_copy_is_byte_for_byte_what_pydicom_writes(tmp_path, which):
    # Given a CT file read and pseudonymised as ingest does
    source = _sources(tmp_path)[["phantom", "CT_small", "implicit VR", "big endian"].index(which)]
    record = read_slice(source, source.name)
    raw, as_read = record.source
    pseudo.pseudonymise(record.ds, PATIENT, KEY)

    # When the fast writer writes it, and pydicom's save_as writes the same dataset
    chunks, pixel_offset = staged_chunks(record.ds, raw, as_read)
    buffer = DicomBytesIO()
    record.ds.save_as(buffer, enforce_file_format=True)

    # Then the bytes are the same, and the pixel offset points at the pixel value
    fast = b"".join(bytes(c) for c in chunks)
    assert fast == buffer.getvalue()
    written = pydicom.dcmread(DicomBytesIO(fast))
    assert str(written.PatientID) == PATIENT.pseudonym
    if pixel_offset is not None:
        value = written.PixelData
        assert fast[pixel_offset : pixel_offset + len(value)] == value


def test_elements_written_from_memory_are_what_pydicom_writes(tmp_path):
    # Given the slices of two series of two patients, then a file in another encoding and
    # character set, each read and pseudonymised in one process (the writer remembers what it
    # wrote for an element and writes the same value from memory: pseudonym, UIDs, dates)
    sources = sorted(make_series(tmp_path / "a", slices=4, size=32, seed=6, patient="P-A").rglob("*.dcm"))
    sources += sorted(make_series(tmp_path / "b", slices=4, size=32, seed=7, patient="P-B").rglob("*.dcm"))
    sources += _sources(tmp_path)[1:] + sources[:2]
    for n, source in enumerate(sources):
        record = read_slice(source, source.name)
        raw, as_read = record.source
        patient = pseudo.PatientKey(f"CT-P{n % 3}", -400 + n)
        pseudo.pseudonymise(record.ds, patient, KEY)
        # When the fast writer writes it, and pydicom's save_as the same dataset
        fast = b"".join(bytes(c) for c in staged_chunks(record.ds, raw, as_read)[0])
        buffer = DicomBytesIO()
        record.ds.save_as(buffer, enforce_file_format=True)
        # Then the bytes are the same, each time
        assert fast == buffer.getvalue(), source
        assert str(pydicom.dcmread(DicomBytesIO(fast)).PatientID) == patient.pseudonym


def test_a_big_endian_slice_keeps_its_hu_in_a_file_of_its_own(tmp_path):
    # The volume is read from the staged file only where its pixels are little-endian HU - intercept.
    source = _reencoded(Path(get_testdata_file("CT_small.dcm")), tmp_path / "be.dcm", ExplicitVRBigEndian)
    staging = tmp_path / "staging"
    staging.mkdir()
    record = prepare_slice(source, "be.dcm", staging=staging, key=KEY, issuer_prefix="test")
    assert record.hu_offset is None and record.hu_file is not None and record.hu_file.exists()


def test_the_volume_is_the_hu_the_stored_files_decode_to(cast, settings, tmp_path):
    # Given a phantom series ingested (the volume built from the staged files' pixel data)
    folder = make_series(tmp_path, slices=12, size=40, seed=9)
    report = ingest_path(folder, institution=cast.institution)
    scan = Scan.objects.get(pk=report.scans_created[0])
    stored = Path(settings.MEDIA_ROOT) / scan.storage_dir

    # Then every voxel is the HU its stored slice decodes to, and no pixel copy is left over
    volume = np.load(stored / "volume.npy")
    for instance in scan.instances.order_by("index"):
        ds = pydicom.dcmread(stored / instance.file_name)
        hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        assert np.array_equal(volume[instance.index], hu)
    assert not list(stored.glob("*.hu"))

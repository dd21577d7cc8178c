"""Read one file: is it a CT image we can use, and where does it sit in space?"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, validate_file_meta
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR: an index, not an image
PIXEL_DATA = 0x7FE00010
_FILE_META_GROUP_LENGTH = 0x00020000
# Explicit VR elements of these VRs have a 12-byte header (2 reserved bytes, 4-byte length).
_LONG_HEADER_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})


class FileRejected(ValueError):
    """This file cannot be used; the message says why in words a data manager understands.

    `series_uid` (original) names the series the file belongs to when its header said so: a
    damaged slice refuses its series. `unplaced` marks a file that claims to be DICOM (it has
    the "DICM" marker) but whose header cannot be read, so it may belong to any series."""

    def __init__(self, reason: str, *, series_uid: str = "", unplaced: bool = False) -> None:
        super().__init__(reason)
        self.series_uid = series_uid
        self.unplaced = unplaced


class NotCtImage(FileRejected):
    """A readable DICOM object that is not a single-frame CT image."""


@dataclass
class SliceRecord:
    """What ingest keeps of one file once read: where it sits, its pixels in HU, and (after
    `prepare_slice`) its pseudonymised copy in a staging folder. Picklable, so worker
    processes can prepare slices in parallel."""

    path: Path
    name: str
    sha256: str
    ds: Dataset | None
    study_uid: str
    series_uid: str
    sop_uid: str
    patient_id: str
    issuer: str
    patient_name: str
    rows: int
    columns: int
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing) as DICOM orders it
    orientation: tuple[float, ...]  # six direction cosines: row direction, column direction
    position: tuple[float, float, float]
    hu: np.ndarray | None  # int16 (rows, columns); None once prepared, or when `stored` + intercept is it
    staged: Path | None = None  # the pseudonymised file, once prepared
    hu_file: Path | None = None  # the slice's HU as raw native int16, once prepared
    # Or, in the usual CT case, where the staged file's pixel data is the HU less an integer
    # intercept (little-endian 16-bit, slope 1): the value's offset in `staged`, and the intercept.
    hu_offset: int | None = None
    hu_intercept: int | None = None
    header: dict | None = None  # pseudonymised study/series attributes, once prepared
    # What the header states about the slice spacing: gaps are judged against it.
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    # The file's bytes and its elements as read (for the staged copy), until prepared.
    source: tuple[bytes, dict] | None = field(default=None, repr=False, compare=False)
    # The stored values as read (a view of the file's bytes) when the HU are them plus
    # hu_intercept: the HU copy is only made if the staged file cannot serve the volume.
    stored: np.ndarray | None = field(default=None, repr=False, compare=False)

    def hu_values(self) -> np.ndarray | None:
        """The slice's HU (int16) while it is in memory: made from `stored` on first use."""
        if self.hu is None and self.stored is not None:
            self.hu = _hu16(self.stored, self.hu_intercept or 0)
        return self.hu

    @property
    def normal(self) -> np.ndarray:
        row, col = np.array(self.orientation[:3]), np.array(self.orientation[3:])
        return np.cross(row, col)


def read_slice(path: Path, name: str) -> SliceRecord:
    raw = path.read_bytes()
    claims_dicom = raw[128:132] == b"DICM"
    try:
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(raw))
        series_uid = str(ds.get("SeriesInstanceUID", "") or "")
    except InvalidDicomError as exc:
        raise FileRejected("not DICOM (no DICOM preamble or header)", unplaced=claims_dicom) from exc
    except Exception as exc:  # pydicom raises many types on damaged headers
        raise FileRejected(f"not readable as DICOM: {exc}", unplaced=claims_dicom) from exc
    meta_class = str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", "") or "")
    if claims_dicom and not series_uid and meta_class != MEDIA_STORAGE_DIRECTORY:
        # Every image object has a series; only a DICOMDIR lacks one. Without it the file may
        # be a slice of any series of the import.
        raise FileRejected("damaged DICOM header: the series it belongs to cannot be read", unplaced=True)
    # pydicom decodes an element in place the first time it is read; the checks below only read,
    # so their elements are put back as read and the staged copy can take their bytes unchanged.
    as_read = dict(ds._dict)
    try:
        record = _checked(ds, raw, path, name)
        _restore_read_elements(ds, as_read)
        record.source = (raw, as_read)
        return record
    except NotCtImage:
        # Another kind of object (an MR, a dose report) is no slice of a CT series, even under
        # its series UID: it does not refuse the series; a missing slice shows as a gap anyway.
        raise
    except FileRejected as exc:
        exc.series_uid = series_uid
        raise
    except Exception as exc:  # pydicom reads lazily: damage may surface at any attribute
        raise FileRejected(f"damaged DICOM header ({exc})", series_uid=series_uid) from exc


def _checked(ds: Dataset, raw: bytes, path: Path, name: str) -> SliceRecord:
    modality = str(ds.get("Modality", "")).upper()
    sop_class = str(ds.get("SOPClassUID", ""))
    if modality != "CT" or sop_class not in {CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE}:
        raise NotCtImage(f"not a CT image (modality {modality or 'missing'}); only CT series are imported")
    if sop_class == ENHANCED_CT_IMAGE_STORAGE:
        raise NotCtImage("enhanced (multi-frame) CT is not supported yet; export as single-frame CT")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if not ds.get(keyword):
            raise FileRejected(f"missing {keyword}")
    if "PixelData" not in ds:
        raise FileRejected("missing pixel data")
    if not str(ds.get("PatientID", "") or "").strip():
        raise FileRejected("missing Patient ID: scans cannot be kept together per patient without one")
    try:
        geometry = _geometry(ds)
    except (AttributeError, KeyError, ValueError, TypeError) as exc:
        raise FileRejected(f"missing or invalid geometry ({exc}); cannot place the slice in 3D") from exc
    hu, direct_intercept, stored = _hu(ds)
    return SliceRecord(
        path=path,
        name=name,
        sha256=hashlib.sha256(raw).hexdigest(),
        ds=ds,
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_uid=str(ds.SOPInstanceUID),
        patient_id=str(ds.get("PatientID", "")),
        issuer=str(ds.get("IssuerOfPatientID", "")),
        patient_name=str(ds.get("PatientName", "")),
        hu=hu,
        stored=stored,
        hu_intercept=direct_intercept,
        slice_thickness=_positive(ds.get("SliceThickness")),
        spacing_between_slices=_positive(ds.get("SpacingBetweenSlices")),
        **geometry,
    )


def _restore_read_elements(ds: Dataset, as_read: dict) -> None:
    for tag, elem in as_read.items():
        current = ds._dict.get(tag)
        if (
            current is not None
            and current is not elem
            and isinstance(elem, RawDataElement)
            and current.VR != "SQ"
        ):
            ds._dict[tag] = elem


def _positive(value: object) -> float | None:
    """A stated spacing, or None when absent or nonsense (some exporters write 0 or negatives)."""
    try:
        number = abs(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 1e-3 else None


def _geometry(ds: Dataset) -> dict:
    spacing = tuple(float(v) for v in ds.PixelSpacing)
    orientation = tuple(float(v) for v in ds.ImageOrientationPatient)
    position = tuple(float(v) for v in ds.ImagePositionPatient)
    if len(spacing) != 2 or len(orientation) != 6 or len(position) != 3:
        raise ValueError("PixelSpacing, ImageOrientationPatient or ImagePositionPatient has the wrong length")
    if min(spacing) <= 0:
        raise ValueError("non-positive pixel spacing")
    return {
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "pixel_spacing": spacing,  # type: ignore[dict-item]
        "orientation": orientation,
        "position": position,  # type: ignore[dict-item]
    }


def _hu(ds: Dataset) -> tuple[np.ndarray | None, int | None, np.ndarray | None]:
    """The slice's HU (int16), and the intercept when the HU are exactly the little-endian
    16-bit stored values plus that integer (then the volume is read from the staged file).
    In that case the HU are not made here (None, with the stored values third): copying half a
    megabyte per slice that the volume then reads from the staged file was a tenth of a slice's
    cost; `SliceRecord.hu_values` makes them when they are needed after all."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    bits = int(ds.get("BitsAllocated", 16))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts is not None and not ts.is_transfer_syntax:
        raise FileRejected(
            f"unsupported transfer syntax {ts}: not a DICOM transfer syntax this system can decode"
        )
    if ts is not None and not ts.is_compressed and bits == 16 and int(ds.get("SamplesPerPixel", 1)) == 1:
        # Fast path: uncompressed 16-bit pixels are read straight from the bytes.
        data = ds.get_item(PIXEL_DATA).value  # as read: decoding it would copy half a megabyte
        expected = rows * cols * 2
        if len(data) < expected:
            raise FileRejected(f"truncated pixel data ({len(data)} of {expected} bytes); the file is damaged")
        dtype = np.dtype("<i2" if signed else "<u2")
        if not ts.is_little_endian:
            dtype = dtype.newbyteorder(">")
        stored = np.frombuffer(data, dtype=dtype, count=rows * cols).reshape(rows, cols)
    else:
        try:
            stored = ds.pixel_array
        except NotImplementedError as exc:
            raise FileRejected(
                f"unsupported transfer syntax {ts.name if ts else 'unknown'}: no installed decoder ({exc})"
            ) from exc
        except Exception as exc:
            raise FileRejected(f"pixel data cannot be decoded ({exc}); the file may be truncated") from exc
        if stored.shape != (rows, cols):
            raise FileRejected(f"pixel data of shape {stored.shape} does not match {rows}×{cols}")
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if slope == 1 and intercept == int(intercept):
        lo, hi = int(stored.min()), int(stored.max())
        if lo >= -32768 and hi <= 32767 and lo + intercept >= -32768 and hi + intercept <= 32767:
            # The usual CT case (12-bit values, intercept -1024): exact in int16, no wide copies.
            direct = stored.dtype.itemsize == 2 and stored.dtype.byteorder in ("<", "=", "|")
            if direct and np.little_endian:
                return None, int(intercept), stored
            return _hu16(stored, int(intercept)), None, None
        hu = stored.astype(np.int32) + int(intercept)
    else:
        hu = np.rint(stored.astype(np.float32) * slope + intercept)
    return np.clip(hu, -32768, 32767).astype(np.int16), None, None


def _hu16(stored: np.ndarray, intercept: int) -> np.ndarray:
    """stored + intercept as int16 (the caller checked that it fits)."""
    hu16 = stored.astype(np.int16)
    hu16 += np.int16(intercept)
    return hu16


def prepare_slice(path: Path, name: str, *, staging: Path, key: bytes, issuer_prefix: str) -> SliceRecord:
    """Read, check and pseudonymise one file into `staging`. Runs in worker processes.

    The patient's pseudonym and date shift are keyed hashes of the original ID, so a worker
    derives them without the database; the ingest records the same values in its table. UIDs
    are remapped under the institution's own key (`issuer_prefix` is its slug), as
    `store.uid_key` computes it for the lookups.
    """
    from imaging import pseudonymise as pseudo

    record = read_slice(path, name)
    ds = record.ds
    raw, as_read = record.source  # type: ignore[misc]
    record.source = None
    issuer = f"{issuer_prefix}/{record.issuer}"
    patient = pseudo.PatientKey(
        pseudo.pseudonym_for(record.patient_id, issuer, key),
        pseudo.date_offset_for(record.patient_id, issuer, key),
    )
    pseudo.pseudonymise(ds, patient, pseudo.uid_key_for(key, issuer_prefix))
    record.staged = staging / f"{record.sha256}.dcm"
    chunks, pixel_offset = staged_chunks(ds, raw, as_read)
    with open(record.staged, "wb") as f:
        f.writelines(chunks)  # the pixel data straight from the bytes received, no copy
    if pixel_offset is not None and record.hu_intercept is not None:
        # The volume is built from the staged file itself: no second copy of the pixels.
        record.hu_offset = pixel_offset
    else:
        # The pixels travel back by file, not through the pool's pipe: pickling half a megabyte
        # per slice cost more CPU than reading the file back into the volume does.
        record.hu_file = staging / f"{record.sha256}.hu"
        record.hu_file.write_bytes(record.hu_values().tobytes())  # type: ignore[union-attr]
    record.hu = record.stored = None
    record.sop_uid = str(ds.SOPInstanceUID)
    record.header = {
        keyword: str(ds.get(keyword, "") or "")
        for keyword in (
            "StudyInstanceUID",
            "StudyDate",
            "StudyDescription",
            "SeriesDescription",
            "FrameOfReferenceUID",
        )
    }
    record.ds = None
    return record


def staged_chunks(ds: Dataset, raw: bytes, as_read: dict) -> tuple[list, int | None]:
    """The pseudonymised file's bytes, as `ds.save_as(enforce_file_format=True)` writes them,
    in pieces, and the offset of the pixel data's value among them (None when not copied).

    pydicom spends about 25 µs per element writing, most of a slice's cost; an element the
    pseudonymisation left as it was read is written as it came: its bytes are sliced from
    `raw`, as pydicom itself writes a raw element. Everything else (the file meta, every
    element changed, removed or decoded, sequences) is pydicom's own writing. Outside the plain
    case (uncompressed, not deflated, same encoding and character set) it is save_as itself."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if (
        meta is None
        or ts is None
        or not ts.is_transfer_syntax
        or ts.is_private
        or ts.is_compressed
        or ts.is_deflated
        or ds.original_encoding != (ts.is_implicit_VR, ts.is_little_endian)
        or ds.original_character_set != ds._character_set
    ):
        buffer = DicomBytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return [buffer.getvalue()], None
    implicit, little = ts.is_implicit_VR, ts.is_little_endian
    # What dcmwrite does to the file meta under enforce_file_format (on its own copy: this
    # dataset is written once and dropped).
    for meta_keyword, ds_keyword in (
        ("MediaStorageSOPClassUID", "SOPClassUID"),
        ("MediaStorageSOPInstanceUID", "SOPInstanceUID"),
    ):
        value = ds.get(ds_keyword)
        if meta.get(meta_keyword) is None or (value and value != meta.get(meta_keyword)):
            setattr(meta, meta_keyword, value)
    preamble = getattr(ds, "preamble", None) or b"\x00" * 128
    if len(preamble) != 128:
        raise ValueError("the dataset's preamble must be 128 bytes long")
    encoded = _encoder(implicit, little)
    encoded.write(preamble)
    encoded.write(b"DICM")
    encoded.write(_file_meta_bytes(meta))
    encodings = ds.get("SpecificCharacterSet", default_encoding)
    source = memoryview(raw)
    chunks: list = []
    written = 0
    pixel_offset = None
    for tag in sorted(ds.keys()):
        if tag.element == 0 and tag.group > 6:
            continue  # retired group lengths, as pydicom leaves them out
        elem = ds.get_item(tag)
        span = _unchanged_span(elem, as_read.get(tag), raw, implicit, little)
        if span is None:
            encoded.write(_element_bytes(elem, encodings, implicit, little))
            continue
        head = encoded.getvalue()
        chunks.append(head)
        written += len(head)
        if tag == PIXEL_DATA:
            pixel_offset = written + span[2]
        chunks.append(source[span[0] : span[1]])
        written += span[1] - span[0]
        encoded = _encoder(implicit, little)
    chunks.append(encoded.getvalue())
    return chunks, pixel_offset


# What pydicom wrote for an element it was given, by everything its bytes depend on. Most of
# what pseudonymisation changes is set to the same value on every slice of a series (the
# pseudonym, the remapped study and series UIDs, shifted dates, the PS3.15 markers): writing
# them once per worker process instead of once per slice was a fifth of a slice's cost.
_ENCODED: dict[tuple, bytes] = {}
_ENCODED_MAX = 4096  # entries: a few series' worth; cleared whole when full


def _element_bytes(elem, encodings, implicit: bool, little: bool) -> bytes:
    key = _element_key(elem)
    if key is not None:
        key = (key, _value_key(encodings), implicit, little)
        found = _ENCODED.get(key)
        if found is not None:
            return found
    encoder = _encoder(implicit, little)
    write_data_element(encoder, elem, encodings)
    written = encoder.getvalue()
    if key is not None:
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        _ENCODED[key] = written
    return written


def _file_meta_bytes(meta) -> bytes:
    """What write_file_meta_info(enforce_standard=True) writes, its elements through the
    memo: only the instance UID differs from one slice to the next."""
    validate_file_meta(meta, enforce_standard=True)  # may add the version and implementation
    body = b"".join(
        _element_bytes(meta.get_item(tag), default_encoding, False, True)
        for tag in sorted(meta.keys())
        if tag != _FILE_META_GROUP_LENGTH
    )
    length = DataElement(_FILE_META_GROUP_LENGTH, "UL", len(body))
    return _element_bytes(length, default_encoding, False, True) + body


def _element_key(elem) -> tuple | None:
    """What an element's bytes depend on, or None when it is not worth or not safe to
    remember (buffered or large values, values of other types)."""
    if elem.is_raw:
        value = elem.value
        if value is None or len(value) > 256:
            return None
        # Its bytes are decoded as the file it came from was encoded.
        return ("raw", int(elem.tag), elem.VR, elem.length, value, elem.is_implicit_VR, elem.is_little_endian)
    if elem.is_buffered:
        return None
    if elem.VR == "SQ":
        items = []
        for item in elem.value:
            inner = [_element_key(item.get_item(tag)) for tag in sorted(item.keys())]
            if any(k is None for k in inner):
                return None
            items.append((bool(getattr(item, "is_undefined_length_sequence_item", False)), tuple(inner)))
        value: tuple | None = tuple(items)
    else:
        value = _value_key(elem.value)
    if value is None:
        return None
    return (int(elem.tag), elem.VR, bool(elem.is_undefined_length), value)


def _value_key(value) -> tuple | None:
    if value is None:
        return ("",)
    if isinstance(value, PersonName):
        return ("PN", str(value), value.original_string, tuple(value.encodings or ()))
    if isinstance(value, str | int | float):  # also UID, DSfloat, IS: their type is in the key
        return (type(value).__name__, str(value))
    if isinstance(value, bytes):
        return ("bytes", value) if len(value) <= 256 else None
    if isinstance(value, MultiValue | list | tuple):
        inner = tuple(_value_key(v) for v in value)
        return None if any(k is None for k in inner) else (type(value).__name__, inner)
    return None


def _encoder(implicit: bool, little: bool) -> DicomBytesIO:
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = implicit, little
    return buffer


def _unchanged_span(elem, as_read, raw: bytes, implicit: bool, little: bool) -> tuple[int, int, int] | None:
    """(start, end, header length) of an element in `raw` when it is the element as read and
    its bytes there are exactly what pydicom would write for it; else None."""
    if elem is None or elem is not as_read or not isinstance(elem, RawDataElement):
        return None
    if elem.length == 0xFFFFFFFF or elem.is_implicit_VR != implicit or elem.is_little_endian != little:
        return None
    value = elem.value
    if value is None or len(value) != elem.length:
        return None
    header = 8 if implicit or elem.VR not in _LONG_HEADER_VRS else 12
    start = elem.value_tell - header
    end = elem.value_tell + elem.length
    if start < 0 or end > len(raw):
        return None
    if elem.tag == PIXEL_DATA and elem.length % 2:
        return None  # pydicom pads an odd-length pixel value it writes
    byteorder: Literal["little", "big"] = "little" if little else "big"
    expected = (elem.tag >> 16).to_bytes(2, byteorder) + (elem.tag & 0xFFFF).to_bytes(2, byteorder)
    if raw[start : start + 4] != expected:
        return None
    if not implicit and raw[start + 4 : start + 6] != (elem.VR or "").encode("ascii", "replace"):
        return None  # pydicom changed the VR it read (e.g. UN of a known tag): it writes the new one
    return start, end, header


def read_hu_into(record: SliceRecord, out: np.ndarray) -> None:
    """Put a slice's HU into `out` (int16, rows × columns): from memory, or read straight
    from the file a worker wrote, without an intermediate copy."""
    hu = record.hu_values()
    if hu is not None:
        out[...] = hu
        return
    view = memoryview(out).cast("B")
    if record.hu_offset is not None and record.staged is not None:
        with open(record.staged, "rb") as f:
            f.seek(record.hu_offset)
            if f.readinto(view) != view.nbytes:
                raise OSError(f"{record.staged}: the staged pixels are truncated")
        if record.hu_intercept:
            # In range: the reader checked that stored value + intercept fits in int16.
            out += np.int16(record.hu_intercept)
        return
    if record.hu_file is None:
        raise ValueError(f"{record.name}: neither pixels nor a pixel file")
    with open(record.hu_file, "rb") as f:
        if f.readinto(view) != view.nbytes:
            raise OSError(f"{record.hu_file}: the prepared pixels are truncated")


def prepare_or_reason(item: tuple[Path, str], **kwargs) -> SliceRecord | dict:
    """prepare_slice for a worker pool: a rejected file comes back as {"file", "reason"}, with
    "series" (the remapped series UID) when its header named one, and "unplaced": true when
    it looks like DICOM but nothing of its header can be read."""
    from imaging import pseudonymise as pseudo

    path, name = item
    try:
        return prepare_slice(path, name, **kwargs)
    except FileRejected as exc:
        refusal: dict = {"file": name, "reason": str(exc)}
        if exc.series_uid:
            # The stored (remapped) UID, never the original: reports are kept.
            refusal["series"] = pseudo.remap_uid(exc.series_uid, kwargs["key"])
        if exc.unplaced:
            refusal["unplaced"] = True
        return refusal
    except OSError as exc:
        return {"file": name, "reason": f"cannot read the file: {exc}", "unplaced": True}

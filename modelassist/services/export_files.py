"""The files of a dataset export: NIfTI images and labels, DICOM SEG, and reading them back.

NIfTI: the array is stored as (x, y, z) = (column, row, slice), and the affine maps those
indices to RAS+ mm: DICOM's LPS position of voxel (i, j, k) is
origin + i·sx·col_dir + j·sy·row_dir + k·sz·slice_dir, and RAS is LPS with x and y negated.
nibabel writes .nii.gz with a zero gzip time stamp, so the same volume gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import warnings
from pathlib import Path
from typing import cast

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from core.models import Scan
from modelassist.selectors import media_path

log = logging.getLogger(__name__)
# highdicom logs every attribute module it copies at INFO: thousands of lines per export.
logging.getLogger("highdicom").setLevel(logging.WARNING)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
# DICOM SEG codes. The category is SNOMED CT "Morphologically Altered Structure" (CID 7150);
# campaign classes have no standard code everyone agrees on, so each class gets a code of a
# local scheme ("99" prefix, PS3.3 8.1), named after the class. dciodvfy warns about the
# unknown scheme designator; the object is valid.
SEG_CATEGORY = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
LOCAL_SCHEME = "99CURATECT"
LUNG = hd.sr.CodedConcept("39607008", "SCT", "Lung")
SEG_SERIES_NUMBER = 900


def nifti_affine(scan: Scan) -> np.ndarray:
    d = np.asarray(scan.direction, dtype=np.float64).reshape(3, 3)  # rows: column, row, slice directions
    sx, sy, sz = (float(v) for v in scan.spacing)
    lps = np.column_stack([d[0] * sx, d[1] * sy, d[2] * sz])
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ lps
    affine[:3, 3] = LPS_TO_RAS @ np.asarray(scan.origin, dtype=np.float64)
    return affine


def write_nifti(volume: np.ndarray, scan: Scan, path: Path) -> None:
    """A (z, y, x) volume as NIfTI-1 with the scan's geometry (qform and sform: scanner)."""
    affine = nifti_affine(scan)
    image = nib.Nifti1Image(volume.transpose(2, 1, 0), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)


def read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(volume (z, y, x) in the stored dtype, affine) of a file written by write_nifti."""
    image = cast(nib.Nifti1Image, nib.load(path))
    return np.asarray(image.dataobj).transpose(2, 1, 0), image.affine


def spacing_of_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """(x, y, z) spacing in mm from a NIfTI affine."""
    sx, sy, sz = (float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    return sx, sy, sz


def source_images(scan: Scan) -> list[Dataset]:
    """The stored pseudonymised CT instances, in volume (z) order, headers only."""
    folder = media_path(scan.storage_dir)
    return [
        pydicom.dcmread(folder / inst.file_name, stop_before_pixels=True)
        for inst in scan.instances.order_by("index")
    ]


def stable_uid(*parts: str) -> str:
    """A UID derived from content (2.25 form): an export of the same labels gets the same UIDs."""
    return generate_uid(prefix=None, entropy_srcs=[str(p) for p in parts])


def write_seg(
    scan: Scan,
    labels: np.ndarray,
    classes: dict[int, str],
    path: Path,
    *,
    label_sha256: str,
    content_date: dt.datetime,
    algorithm: str = "MANUAL",
) -> dict[int, int] | None:
    """A BINARY DICOM SEG of the labels referencing the scan's stored CT instances: one segment
    per class present. Returns {segment number: class value}; None (no file) when no class is
    present, since a SEG needs at least one segment."""
    present = [int(v) for v in np.unique(labels) if v != 0]
    if not present:
        return None
    unknown = [v for v in present if v not in classes]
    if unknown:
        raise ValueError(f"label values {unknown} are not classes of the campaign's schema")
    table = np.zeros(256, dtype=np.uint8)
    for number, value in enumerate(present, start=1):
        table[value] = number
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=classes[value][:64],
            segmented_property_category=SEG_CATEGORY,
            segmented_property_type=hd.sr.CodedConcept(f"C{value}", LOCAL_SCHEME, classes[value][:64]),
            algorithm_type=algorithm,
            tracking_id=f"class {value}",
            tracking_uid=stable_uid("curatect-class", classes[value], str(value)),
            anatomic_regions=[LUNG],
        )
        for number, value in enumerate(present, start=1)
    ]
    with warnings.catch_warnings():
        # Pseudonymised patient names are one component ("CT-…"); highdicom warns about that.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        seg = _segmentation(scan, table[labels], descriptions, label_sha256)
    # Content date and time from the curation, not the clock: same labels, same bytes.
    # highdicom declares these as DA/TM; pydicom takes the DICOM string form as well.
    seg.ContentDate = content_date.strftime("%Y%m%d")  # type: ignore[assignment]
    seg.ContentTime = content_date.strftime("%H%M%S")  # type: ignore[assignment]
    seg.SeriesDate, seg.SeriesTime = seg.ContentDate, seg.ContentTime
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path, enforce_file_format=True)
    return {number: value for number, value in enumerate(present, start=1)}


def _segmentation(
    scan: Scan, pixels: np.ndarray, descriptions: list, label_sha256: str
) -> hd.seg.Segmentation:
    return hd.seg.Segmentation(
        source_images=source_images(scan),
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=stable_uid("curatect-seg-series", scan.series_uid, label_sha256),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=stable_uid("curatect-seg", scan.series_uid, label_sha256),
        instance_number=1,
        manufacturer="CurateCT",
        manufacturer_model_name="CurateCT dataset export",
        software_versions="1",
        device_serial_number="curatect",
        content_label="LESIONS",
        content_description="Curated lesion labels",
        series_description="CurateCT curated labels",
    )


def read_seg_labels(path: Path, scan: Scan, segment_classes: dict[int, int]) -> np.ndarray:
    """The (z, y, x) class labels a SEG holds, frames matched to the scan's instances by SOP UID."""
    seg = hd.seg.segread(path)
    uids = list(scan.instances.order_by("index").values_list("sop_uid", flat=True))
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids,
        combine_segments=True,
        skip_overlap_checks=True,
        assert_missing_frames_are_empty=True,
    )
    table = np.zeros(max(segment_classes) + 1, dtype=np.uint8)
    for number, value in segment_classes.items():
        table[number] = value
    return table[pixels.astype(np.intp)]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

"""The hospital's own identifiers for a stored scan: its source headers as the hospital's PACS
knows them, so that derived objects (labels as DICOM SEG) sent back reference the original
study, series, instances and frame of reference, and name the real patient.

Only the send path uses this; the stored files, the viewer and exports stay pseudonymised.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pydicom
from django.conf import settings
from pydicom.dataset import Dataset

from core.models import PatientPseudonym, Scan
from pacs.models import SeriesOrigin

_HEADER_KEYWORDS = (
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "IssuerOfPatientID",
)
_DEIDENTIFICATION_MARKERS = (
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "LongitudinalTemporalInformationModified",
)


class OriginUnknown(ValueError):
    """The hospital's identifiers of the scan are not known; the message says what to do."""


def stored_sources(scan: Scan) -> list[Dataset]:
    """The scan's stored (pseudonymised) headers in volume order, without pixel data."""
    root = Path(settings.MEDIA_ROOT) / scan.storage_dir
    return [
        pydicom.dcmread(root / name, stop_before_pixels=True)
        for name in scan.instances.order_by("index").values_list("file_name", flat=True)
    ]


def _original_date(shifted: str, offset_days: int) -> str:
    if len(shifted) != 8 or not shifted.isdigit():
        return ""
    day = dt.date(int(shifted[:4]), int(shifted[4:6]), int(shifted[6:])) - dt.timedelta(days=offset_days)
    return day.strftime("%Y%m%d")


def reidentify(sources: list[Dataset], origin: SeriesOrigin, patient: PatientPseudonym) -> None:
    """Put the hospital's identifiers back into the source headers, in place."""
    if len(origin.sop_uids) != len(sources):
        raise OriginUnknown(
            "the recorded original UIDs do not match the stored instances; import the scan again"
        )
    header = origin.header or {}
    for ds, sop_uid in zip(sources, origin.sop_uids, strict=True):
        ds.StudyInstanceUID = origin.study_uid
        ds.SeriesInstanceUID = origin.series_uid
        ds.SOPInstanceUID = sop_uid
        if origin.frame_of_reference_uid:
            ds.FrameOfReferenceUID = origin.frame_of_reference_uid
        ds.PatientID = patient.original_patient_id
        ds.PatientName = patient.original_patient_name
        for keyword in _HEADER_KEYWORDS:
            if keyword in header:
                setattr(ds, keyword, header[keyword])
        if "StudyDate" not in header and ds.get("StudyDate"):
            ds.StudyDate = _original_date(str(ds.StudyDate), patient.date_offset_days)
        for keyword in _DEIDENTIFICATION_MARKERS:
            if keyword in ds:
                delattr(ds, keyword)


def original_sources(scan: Scan) -> list[Dataset]:
    """The scan's source headers with the hospital's identifiers, in volume order."""
    origin = SeriesOrigin.objects.filter(scan=scan).first()
    if origin is None:
        raise OriginUnknown(
            "the hospital's UIDs of this scan are unknown (it did not arrive from its PACS, and the PACS "
            "does not hold it); labels cannot be attached to the hospital's images"
        )
    sources = stored_sources(scan)
    reidentify(sources, origin, scan.study.patient)
    return sources

"""Store one checked series: pseudonymised files, the volume cache, and its rows — all or nothing.

Files go to a temporary folder first; the rows are written in one transaction, and the folder
is renamed into place as the last step inside it. Any failure removes the folder and rolls
the rows back, so a failed series leaves neither files nor rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import uuid
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction

from platform_core import pseudonymise as pseudo
from platform_core.ingest.reader import read_hu_into
from platform_core.ingest.series import SortedSeries
from platform_core.models import CampaignScan, Instance, Institution, PatientPseudonym, Scan, Study

VOLUME_FILE = "volume.npy"


def pseudonym_key() -> bytes:
    return settings.PSEUDONYM_KEY.encode()


def patient_for(institution: Institution, patient_id: str, issuer: str, name: str) -> PatientPseudonym:
    """The same patient of an institution always gets the same pseudonym and date shift."""
    key = pseudonym_key()
    id_hash = hashlib.sha256(f"{institution.pk}\x00{issuer}\x00{patient_id}".encode()).hexdigest()
    defaults = {
        "original_patient_id": patient_id[:128],
        "original_patient_name": name[:256],
        "pseudonym": pseudo.pseudonym_for(patient_id, f"{institution.slug}/{issuer}", key),
        "date_offset_days": pseudo.date_offset_for(patient_id, f"{institution.slug}/{issuer}", key),
    }
    try:
        with transaction.atomic():
            patient, _ = PatientPseudonym.objects.get_or_create(
                institution=institution, original_id_hash=id_hash, defaults=defaults
            )
    except IntegrityError:
        # A concurrent import created the same patient first.
        patient = PatientPseudonym.objects.get(institution=institution, original_id_hash=id_hash)
    return patient


def store_series(
    series: SortedSeries, *, institution: Institution, campaign_id: int | None = None
) -> tuple[Scan, bool]:
    """Store a series of prepared (pseudonymised, staged) slices. Returns (scan, created);
    an already imported series is returned unchanged."""
    key = pseudonym_key()
    first = series.slices[0]
    series_uid = pseudo.remap_uid(first.series_uid, key)
    existing = Scan.objects.filter(series_uid=series_uid).first()
    if existing is not None:
        if campaign_id:
            CampaignScan.objects.get_or_create(campaign_id=campaign_id, scan=existing)
        return existing, False
    patient = patient_for(institution, first.patient_id, first.issuer, first.patient_name)
    scans_root = Path(settings.MEDIA_ROOT) / "scans"
    tmp = scans_root / f".tmp-{uuid.uuid4().hex}"
    final = scans_root / series_uid
    tmp.mkdir(parents=True)
    try:
        for index, record in enumerate(series.slices):
            record.staged.rename(tmp / f"{index:05d}.dcm")
        volume_sha = _write_volume(tmp / VOLUME_FILE, series)
        header = first.header or {}
        with transaction.atomic():
            study = _study(institution, patient, header)
            scan = Scan.objects.create(
                study=study,
                series_uid=series_uid,
                description=header.get("SeriesDescription", "")[:200],
                rows=first.rows,
                columns=first.columns,
                slices=len(series.slices),
                spacing=list(series.spacing),
                origin=list(series.origin),
                direction=series.direction,
                frame_of_reference_uid=header.get("FrameOfReferenceUID", ""),
                gaps=series.gaps,
                storage_dir=f"scans/{series_uid}",
                volume_sha256=volume_sha,
            )
            Instance.objects.bulk_create(
                Instance(
                    scan=scan, sop_uid=r.sop_uid, index=i, file_name=f"{i:05d}.dcm", source_sha256=r.sha256
                )
                for i, r in enumerate(series.slices)
            )
            if campaign_id:
                CampaignScan.objects.create(campaign_id=campaign_id, scan=scan)
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if final.exists() and not Scan.objects.filter(series_uid=series_uid).exists():
            shutil.rmtree(final, ignore_errors=True)
        raise
    return scan, True


def _write_volume(path: Path, series: SortedSeries) -> str:
    """Write the (z, y, x) int16 volume as .npy slice by slice through one slice buffer, and
    return the sha256 of its voxel bytes. Assembling the 150 MB array in memory first and
    saving it cost a receiving listener more kernel time (page faults, copies) than the rest
    of the import."""
    first = series.slices[0]
    shape = (len(series.slices), first.rows, first.columns)
    buffer = np.empty(shape[1:], dtype=np.int16)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(buffer.dtype), "fortran_order": False, "shape": shape}
        )
        for record in series.slices:
            read_hu_into(record, buffer)
            digest.update(memoryview(buffer).cast("B"))
            f.write(memoryview(buffer).cast("B"))
    return digest.hexdigest()


def _study(institution: Institution, patient: PatientPseudonym, header: dict) -> Study:
    study_date = None
    raw = header.get("StudyDate", "")
    if len(raw) == 8 and raw.isdigit():
        study_date = dt.date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    study, _ = Study.objects.get_or_create(
        study_uid=header["StudyInstanceUID"],
        defaults={
            "institution": institution,
            "patient": patient,
            "study_date": study_date,
            "description": header.get("StudyDescription", "")[:200],
        },
    )
    return study

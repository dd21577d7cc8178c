"""Store one checked series: pseudonymised files, the volume cache, and its rows — all or nothing.

Files go to a temporary folder first; the rows are written in one transaction, and the folder
is renamed into place as the last step inside it. Any failure removes the folder and rolls
the rows back, so a failed series leaves neither files nor rows.

Tenancy: UIDs are remapped under the institution's own key (`uid_key`), and "already present"
is looked up among the institution's own scans only, so the same original UID arriving at
another institution is a new, independent scan there, and nothing in the answer differs from
any other new scan. Within one institution, a series whose UID is known but whose pixels or
geometry differ is refused: it never replaces, or silently stands in for, the stored one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction

from core.models import CampaignScan, Instance, Institution, PatientPseudonym, Scan, Study
from core.temporaries import owned_name
from imaging import pseudonymise as pseudo
from imaging.ingest.reader import read_hu_into
from imaging.ingest.series import SeriesRejected, SortedSeries

VOLUME_FILE = "volume.npy"
# Positions and spacings of a re-export of the same series agree to far better than this (mm).
_GEOMETRY_TOL = 1e-3


def pseudonym_key() -> bytes:
    """The platform key: patient pseudonyms and date shifts (scoped by the institution's slug
    inside the message), and the UIDs of scans stored before UID keys were per institution."""
    return settings.PSEUDONYM_KEY.encode()


def uid_key(institution: Institution) -> bytes:
    """The key this institution's UIDs are remapped under (reader.prepare_slice uses the same)."""
    return pseudo.uid_key_for(pseudonym_key(), institution.slug)


def uid_keys(institution: Institution) -> tuple[bytes, ...]:
    """Every key the UIDs of this institution's stored objects may be remapped under: its own,
    then the one platform-wide key of scans stored before. Lookups with the second one are
    still scoped to the institution, so an old scan of another institution is never found."""
    return (uid_key(institution), pseudonym_key())


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
    """Store a series of prepared (pseudonymised, staged) slices. Returns (scan, created); a
    series this institution already holds, with the same pixels and geometry, is returned
    unchanged. SeriesRejected when the institution holds the UID with other content."""
    first = series.slices[0]
    candidates = [pseudo.remap_uid(first.series_uid, key) for key in uid_keys(institution)]
    existing = _own_scan(institution, candidates)
    if existing is not None:
        return _already_present(existing, series, campaign_id), False
    _refuse_known_instances(institution, series)
    try:
        return _store_new(series, candidates[0], institution, campaign_id), True
    except IntegrityError as exc:
        # A concurrent import of the same series by this institution stored it first.
        existing = _own_scan(institution, candidates)
        if existing is None:
            raise SeriesRejected(
                "another import stored series with the same UIDs at the same moment; send this one again"
            ) from exc
        return _already_present(existing, series, campaign_id), False


def _own_scan(institution: Institution, series_uids: list[str]) -> Scan | None:
    return (
        Scan.objects.filter(study__institution=institution, series_uid__in=series_uids)
        .select_related("study")
        .first()
    )


def _refuse_known_instances(institution: Institution, series: SortedSeries) -> None:
    """An instance belongs to one series: a new series reusing the SOP Instance UID of one this
    institution stored (a mis-exported or crafted series) is refused, not stored beside it."""
    known = (
        Instance.objects.filter(
            scan__study__institution=institution, sop_uid__in=[r.sop_uid for r in series.slices]
        )
        .values_list("scan_id", flat=True)
        .first()
    )
    if known is not None:
        raise SeriesRejected(
            f"some of its instances (SOP Instance UIDs) are already stored in another series (scan {known}); "
            "an instance belongs to one series: export the series again with its own UIDs"
        )


def _already_present(scan: Scan, series: SortedSeries, campaign_id: int | None) -> Scan:
    difference = _difference(scan, series)
    if difference:
        raise SeriesRejected(
            f"a series with this SeriesInstanceUID is already stored (scan {scan.pk}), but {difference}; "
            "the stored scan is kept unchanged. Send the series as it was stored, or give the new "
            "images a new SeriesInstanceUID"
        )
    if campaign_id:
        CampaignScan.objects.get_or_create(campaign_id=campaign_id, scan=scan)
    return scan


def _difference(scan: Scan, series: SortedSeries) -> str:
    """How the arriving series differs from the stored scan ("" when it is the same images)."""
    first = series.slices[0]
    shape = (len(series.slices), first.rows, first.columns)
    if shape != scan.shape:
        return (
            f"this one has {shape[0]} slices of {shape[1]}×{shape[2]}, the stored one "
            f"{scan.slices} of {scan.rows}×{scan.columns}"
        )
    geometry = [
        (list(series.spacing), scan.spacing),
        (list(series.origin), scan.origin),
        (list(series.direction), scan.direction),
    ]
    if any(not np.allclose(new, old, rtol=0, atol=_GEOMETRY_TOL) for new, old in geometry):
        return "its geometry (spacing, position or orientation) differs"
    digest = hashlib.sha256()
    for view in _hu_slices(series):
        digest.update(view)
    if digest.hexdigest() != scan.volume_sha256:
        return "its pixel data differ"
    return ""


def temporary_name(prefix: str) -> str:
    """A unique temporary folder name under scans/ that names its owner (pid@host): a process
    SIGKILLed mid-import cannot remove its own, and the sweep at worker start removes those
    whose owner on this host is gone (imaging.ingest.cleanup)."""
    return owned_name(prefix)


def _store_new(
    series: SortedSeries, series_uid: str, institution: Institution, campaign_id: int | None
) -> Scan:
    first = series.slices[0]
    patient = patient_for(institution, first.patient_id, first.issuer, first.patient_name)
    scans_root = Path(settings.MEDIA_ROOT) / "scans"
    tmp = scans_root / temporary_name(".tmp-")
    final = scans_root / series_uid
    tmp.mkdir(parents=True)
    try:
        for index, record in enumerate(series.slices):
            stored = tmp / f"{index:05d}.dcm"
            record.staged.rename(stored)
            record.staged = stored  # the volume is read from it (reader.read_hu_into)
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
                slice_positions=series.positions,
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
    return scan


def _write_volume(path: Path, series: SortedSeries) -> str:
    """Write the (z, y, x) int16 volume as .npy slice by slice through one slice buffer, and
    return the sha256 of its voxel bytes. Assembling the 150 MB array in memory first and
    saving it cost a receiving listener more kernel time (page faults, copies) than the rest
    of the import."""
    first = series.slices[0]
    shape = (len(series.slices), first.rows, first.columns)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f,
            {
                "descr": np.lib.format.dtype_to_descr(np.dtype(np.int16)),
                "fortran_order": False,
                "shape": shape,
            },
        )
        for view in _hu_slices(series):
            digest.update(view)
            f.write(view)
    return digest.hexdigest()


def _hu_slices(series: SortedSeries) -> Iterator[memoryview]:
    """The series' HU slice by slice in volume order, through one reused buffer (a view of it
    is valid until the next one is produced)."""
    first = series.slices[0]
    buffer = np.empty((first.rows, first.columns), dtype=np.int16)
    for record in series.slices:
        read_hu_into(record, buffer)
        yield memoryview(buffer).cast("B")


def _study(institution: Institution, patient: PatientPseudonym, header: dict) -> Study:
    study_date = None
    raw = header.get("StudyDate", "")
    if len(raw) == 8 and raw.isdigit():
        study_date = dt.date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
    study, _ = Study.objects.get_or_create(
        institution=institution,
        study_uid=header["StudyInstanceUID"],
        defaults={
            "patient": patient,
            "study_date": study_date,
            "description": header.get("StudyDescription", "")[:200],
        },
    )
    if study.patient_id != patient.pk:
        # Filing the series under this study would show it as another patient's.
        raise SeriesRejected(
            "this series' study is already stored for another patient (same StudyInstanceUID, "
            "another Patient ID); correct the Patient ID at the source and send it again"
        )
    return study

"""Import a spool folder of DICOM files that arrived from a PACS: one ImportJob, the ingest
service that uploads use, the original UIDs recorded for sending labels back, and the folder
removed afterwards.

Every network path ends here: the C-STORE receiver (per series), STOW-RS (per request) and
pulls from a remote PACS (per job).
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from django.conf import settings
from django.db.models import Q

from core.jobs.services import job_claim, job_progress
from core.jobs.services import job_finish as core_job_finish
from core.models import Campaign, Institution, Scan, User
from imaging import pseudonymise as pseudo
from imaging.ingest.collect import ArchiveRejected
from imaging.ingest.service import ingest_path, report_outcome
from imaging.ingest.store import temporary_name, uid_keys
from imaging.models import ImportJob
from pacs.models import SeriesOrigin

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

# Original study-level attributes kept for labels sent back (the stored copies are shifted or
# emptied by pseudonymisation).
ORIGIN_HEADER_KEYWORDS = (
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "StudyDescription",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "IssuerOfPatientID",
)
_ORIGIN_TAGS = [
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
    *ORIGIN_HEADER_KEYWORDS,
]


def spool_root() -> Path:
    """Where received files wait for ingest; on the data volume every process shares."""
    root = Path(getattr(settings, "CURATECT_PACS_SPOOL", Path(settings.DATA_DIR) / "pacs-spool"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def new_spool_folder(prefix: str) -> Path:
    folder = spool_root() / f"{prefix}-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    return folder


@dataclass
class OriginalSeries:
    """Original identifiers of one series as read from the received files."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str = ""
    header: dict = field(default_factory=dict)
    sop_uids: set[str] = field(default_factory=set)


def read_origins(folder: Path) -> dict[str, OriginalSeries]:
    """Original UIDs per series, read from the headers only (no pixel data)."""
    found: dict[str, OriginalSeries] = {}
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_ORIGIN_TAGS)
        except Exception:  # not DICOM or damaged: ingest reports it with a reason
            continue
        series_uid = str(ds.get("SeriesInstanceUID", "") or "")
        sop_uid = str(ds.get("SOPInstanceUID", "") or "")
        if not series_uid or not sop_uid:
            continue
        entry = found.get(series_uid)
        if entry is None:
            entry = found[series_uid] = OriginalSeries(
                study_uid=str(ds.get("StudyInstanceUID", "") or ""),
                series_uid=series_uid,
                frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
                header={k: str(ds.get(k, "") or "") for k in ORIGIN_HEADER_KEYWORDS if ds.get(k)},
            )
        entry.sop_uids.add(sop_uid)
    return found


def record_origins(
    origins: dict[str, OriginalSeries], scan_ids: list[int], source: str, *, institution: Institution
) -> None:
    """Keep the original UIDs of the scans this import stored (or found already stored): only
    scans of the importing institution, each matched under the key its UIDs were remapped with."""
    if not origins or not scan_ids:
        return
    keys = uid_keys(institution)
    by_remapped = {pseudo.remap_uid(uid, key): (entry, key) for key in keys for uid, entry in origins.items()}
    for scan in Scan.objects.filter(pk__in=scan_ids, study__institution=institution):
        entry, key = by_remapped.get(scan.series_uid, (None, b""))
        if entry is None:
            continue
        remapped_sops = {pseudo.remap_uid(uid, key): uid for uid in entry.sop_uids}
        stored = list(scan.instances.order_by("index").values_list("sop_uid", flat=True))
        if not all(sop in remapped_sops for sop in stored):
            continue  # a re-send with other instances: keep the first complete record
        SeriesOrigin.objects.update_or_create(
            scan=scan,
            defaults={
                "study_uid": entry.study_uid,
                "series_uid": entry.series_uid,
                "frame_of_reference_uid": entry.frame_of_reference_uid,
                "sop_uids": [remapped_sops[sop] for sop in stored],
                "header": entry.header,
                "source": source,
            },
        )


def intake_campaign_id(institution: Institution) -> int | None:
    """The campaign PACS arrivals join when none is named (settings.CURATECT_INTAKE_CAMPAIGN)."""
    slug = settings.CURATECT_INTAKE_CAMPAIGN
    if not slug:
        return None
    return (
        Campaign.objects.filter(slug=slug)
        .filter(Q(institution=institution) | Q(shared_with=institution))
        .values_list("pk", flat=True)
        .first()
    )


def job_create(
    *,
    institution: Institution,
    source: str,
    campaign_id: int | None = None,
    actor: User | None = None,
    report: dict | None = None,
) -> ImportJob:
    return ImportJob.objects.create(
        institution=institution,
        campaign_id=campaign_id or intake_campaign_id(institution),
        created_by=actor,
        source=source[:500],
        report=report or {},
    )


def job_run_folder(
    job: ImportJob,
    folder: Path,
    *,
    origin_source: str,
    extra: dict | None = None,
    progress: Progress | None = None,
    remove: Path | None = None,
    span: tuple[float, float] = (0.0, 1.0),
) -> ImportJob:
    """Ingest `folder` as `job`; the job's report is the ingest report plus `extra`.

    `extra` may carry "rejected_files" (refused before ingest, e.g. at the DIMSE level), which
    are listed with the files ingest rejected; any other keys are added as they are. Afterwards
    `remove` (default: `folder`) is deleted. Progress runs over `span` of the job (a pull
    spends the first half retrieving).
    """

    def report_progress(fraction: float, message: str) -> None:
        fraction = span[0] + (span[1] - span[0]) * fraction
        job_progress(job, fraction, message)
        if progress:
            progress(fraction, message)

    if not job_running(job):
        shutil.rmtree(remove or folder, ignore_errors=True)
        return job
    institution = Institution.objects.get(pk=job.institution_id)
    try:
        origins = read_origins(folder)
        report = ingest_path(
            folder, institution=institution, campaign_id=job.campaign_id, progress=report_progress
        ).as_dict()
        record_origins(
            origins,
            report["scans_created"] + report["scans_existing"],
            origin_source,
            institution=institution,
        )
        status, error = report_outcome(merge_report(report, extra))
        if error:
            report["error"] = error
    except (ArchiveRejected, FileNotFoundError) as exc:
        report = {"error": str(exc)}
        status = ImportJob.Status.FAILED
    except Exception as exc:  # never leave a job "running" forever
        logger.exception("import %s failed", job.pk)
        report = {
            **empty_report(),
            "error": f"the import failed unexpectedly ({exc.__class__.__name__}: {exc})",
        }
        status = ImportJob.Status.FAILED
    finally:
        shutil.rmtree(remove or folder, ignore_errors=True)
    return job_finish(job, status=status, report=merge_report(report, extra))


def job_running(job: ImportJob, worker: str = "") -> bool:
    """Claim a job this process runs itself (the listener, STOW) unless its task already did.
    False when it has ended, or another worker has it."""
    if job.status == ImportJob.Status.RUNNING:
        return True
    if job_claim(job, worker=worker):
        return True
    job.refresh_from_db()
    return False


def job_finish(job: ImportJob, *, status: str, report: dict) -> ImportJob:
    """Close a job with its report, and write the audit event every import gets. A job refused
    before it ran (still queued) is claimed first: every import goes queued → running → end."""
    if not job_running(job):
        return job
    if not core_job_finish(
        job,
        status,
        actor=job.created_by,
        action="import",
        audit={
            "source": job.source,
            "scans": len(report.get("scans_created", [])),
            "rejected": len(report.get("rejected_files", [])) + len(report.get("rejected_series", [])),
        },
        report=report,
    ):
        job.refresh_from_db()  # it ended meanwhile (cancelled): that ending stands
        return job
    logger.info(
        "import %s (%s): %s, %d scan(s) created, %d file(s) and %d series rejected",
        job.pk,
        job.source,
        job.status,
        len(report.get("scans_created", [])),
        len(report.get("rejected_files", [])),
        len(report.get("rejected_series", [])),
    )
    return job


def empty_report() -> dict:
    return {
        "files_seen": 0,
        "scans_created": [],
        "scans_existing": [],
        "rejected_files": [],
        "rejected_series": [],
    }


def merge_report(report: dict, extra: dict | None) -> dict:
    if not extra:
        return report
    merged = dict(report)
    for key, value in extra.items():
        if key == "rejected_files":
            merged["rejected_files"] = list(value) + list(merged.get("rejected_files", []))
            merged["files_seen"] = merged.get("files_seen", 0) + len(value)
        else:
            merged[key] = value
    return merged


def staging_folder() -> Path:
    """Where prepared (pseudonymised) copies wait: under MEDIA_ROOT, so storing them is a rename."""
    folder = Path(settings.MEDIA_ROOT) / "scans" / temporary_name(".staging-")
    folder.mkdir(parents=True)
    return folder


def job_run_prepared(
    job: ImportJob,
    results: list,
    *,
    origins: dict[str, OriginalSeries],
    origin_source: str,
    extra: dict | None = None,
) -> ImportJob:
    """Finish an import whose files were already prepared (`prepare_or_reason` results, in any
    order): group, check and store them with the ingest service's `ingest_groups`."""
    from imaging.ingest.service import IngestReport, ingest_groups, records_group

    if not job_running(job):
        return job
    job_progress(job, 0.5)
    report = IngestReport(files_seen=len(results))
    grouped = records_group(results, report)  # damaged slices refuse their series

    def progress(fraction: float, message: str) -> None:
        job_progress(job, fraction, message)

    institution = Institution.objects.get(pk=job.institution_id)
    try:
        ingest_groups(
            grouped.groups,
            institution=institution,
            campaign_id=job.campaign_id,
            report=report,
            progress=progress,
            damaged=grouped.damaged,
            unplaced=grouped.unplaced,
        )
        data = report.as_dict()
        record_origins(
            origins, data["scans_created"] + data["scans_existing"], origin_source, institution=institution
        )
        status, error = report_outcome(merge_report(data, extra))
        if error:
            data["error"] = error
    except Exception as exc:  # never leave a job "running" forever
        logger.exception("import %s failed", job.pk)
        data = {
            **report.as_dict(),
            "error": f"the import failed unexpectedly ({exc.__class__.__name__}: {exc})",
        }
        return job_finish(job, status=ImportJob.Status.FAILED, report=merge_report(data, extra))
    return job_finish(job, status=status, report=merge_report(data, extra))

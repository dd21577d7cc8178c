"""The import of one source into an institution (and optionally a campaign), with a report.

Used alike by the upload API (through a Celery task), `manage.py import_dicom`, the
benchmark and the PACS receivers, so every path gets the same checks.

Integrity rules (issue #12): a series is stored whole or not at all. A damaged or unusable
slice refuses its series, a missing slice (a gap against the spacing the headers state)
refuses it too, unless the data manager imports it anyway (`import_incomplete`): then the
rest is stored with the gap kept in the geometry. An import that stores nothing ends
"failed" with the reasons, and every job ends done or failed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from core.jobs.services import job_claim, job_fail, job_finish, job_progress
from core.models import Campaign, Institution, Scan, User
from core.services.audit import audit_record
from imaging import pseudonymise as pseudo
from imaging.dicomweb.wado import series_metadata_bytes
from imaging.ingest.collect import ArchiveRejected, collect
from imaging.ingest.reader import SliceRecord, prepare_or_reason
from imaging.ingest.series import SeriesRejected, sort_and_check
from imaging.ingest.store import pseudonym_key, store_series, temporary_name
from imaging.models import ImportJob
from platform_core.celery import task_named

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
GroupKey = tuple[str, str]  # original (study UID, series UID)

# How the data manager says "store what is usable, keep the gaps" (API field and job option).
IMPORT_INCOMPLETE = "import_incomplete"


class ImportCancelled(Exception):
    """The data manager cancelled the job while it ran."""


@dataclass
class IngestReport:
    scans_created: list[int] = field(default_factory=list)
    scans_existing: list[int] = field(default_factory=list)
    rejected_files: list[dict] = field(default_factory=list)
    rejected_series: list[dict] = field(default_factory=list)
    # Series stored although incomplete (import_incomplete): which scan, what is missing.
    incomplete_series: list[dict] = field(default_factory=list)
    files_seen: int = 0

    def as_dict(self) -> dict:
        return {
            "files_seen": self.files_seen,
            "scans_created": self.scans_created,
            "scans_existing": self.scans_existing,
            "rejected_files": self.rejected_files,
            "rejected_series": self.rejected_series,
            "incomplete_series": self.incomplete_series,
        }


@dataclass
class Grouped:
    """Prepared files by series, and the refused files that bear on whole series."""

    groups: dict[GroupKey, list[SliceRecord]] = field(default_factory=lambda: defaultdict(list))
    # Refused files whose header named their series, by that series' remapped UID.
    damaged: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    # Refused files that look like DICOM but whose series cannot be told: any series may lack them.
    unplaced: list[dict] = field(default_factory=list)


def series_id(series_uid: str) -> str:
    """The key a refused file and its series' slices meet under: never the original UID."""
    return pseudo.remap_uid(series_uid, pseudonym_key())


def ingest_path(
    source: Path,
    *,
    institution: Institution,
    campaign_id: int | None = None,
    progress: Progress | None = None,
    import_incomplete: bool = False,
    workdir: Path | None = None,
) -> IngestReport:
    """Import a file, folder or zip. Zips unpack under `workdir` (default: the data folder's
    work/ folder); what was unpacked is removed before this returns or raises."""
    progress = progress or (lambda fraction, message: None)
    report = IngestReport()
    collected = collect(
        source, max_archive_bytes=settings.INGEST_MAX_ARCHIVE_BYTES, workdir=workdir or work_root()
    )
    staging = Path(settings.MEDIA_ROOT) / "scans" / temporary_name(".staging-")
    try:
        staging.mkdir(parents=True)
        report.rejected_files.extend(collected.rejected)
        report.files_seen = len(collected.files) + len(collected.rejected)
        prepare = partial(
            prepare_or_reason, staging=staging, key=pseudonym_key(), issuer_prefix=institution.slug
        )
        items = [(path, collected.names.get(path, path.name)) for path in collected.files]
        grouped = records_group(_read_all(items, prepare, progress), report)
        ingest_groups(
            grouped.groups,
            institution=institution,
            campaign_id=campaign_id,
            report=report,
            progress=progress,
            damaged=grouped.damaged,
            unplaced=grouped.unplaced,
            import_incomplete=import_incomplete,
        )
    finally:
        collected.cleanup()
        shutil.rmtree(staging, ignore_errors=True)
    progress(1.0, "done")
    return report


def records_group(results: Iterable[SliceRecord | dict], report: IngestReport) -> Grouped:
    """Sort `prepare_or_reason` results into series; refused files go to the report, and
    those that bear on a series (damaged slices) are kept against it."""
    grouped = Grouped()
    seen_sops: set[str] = set()
    for record in results:
        if isinstance(record, dict):
            refusal = {k: v for k, v in record.items() if k in ("file", "reason", "series")}
            report.rejected_files.append(refusal)
            if record.get("series"):
                grouped.damaged[record["series"]].append(refusal)
            elif record.get("unplaced"):
                grouped.unplaced.append(refusal)
            continue
        if record.sop_uid in seen_sops:
            # The same instance twice (a re-sent file): harmless, the series keeps one copy.
            report.rejected_files.append(
                {"file": record.name, "reason": "duplicate of another file in this import"}
            )
            continue
        seen_sops.add(record.sop_uid)
        grouped.groups[(record.study_uid, record.series_uid)].append(record)
    return grouped


def ingest_groups(
    groups: dict[GroupKey, list[SliceRecord]],
    *,
    institution: Institution,
    campaign_id: int | None,
    report: IngestReport,
    progress: Progress,
    damaged: dict[str, list[dict]] | None = None,
    unplaced: list[dict] | None = None,
    import_incomplete: bool = False,
) -> None:
    damaged, unplaced = damaged or {}, unplaced or []
    for n, (key, records) in enumerate(groups.items(), start=1):
        label = f"series {n} of {len(groups)} ({len(records)} files)"
        progress(0.5 + 0.5 * (n - 1) / len(groups), f"checking {label}")  # a cancel stops here
        bad = damaged.get(series_id(key[1]), [])
        try:
            if not import_incomplete:
                _refuse_if_damaged(bad, unplaced)
            series = sort_and_check(records, allow_gaps=import_incomplete)
            scan, created = store_series(series, institution=institution, campaign_id=campaign_id)
        except SeriesRejected as exc:
            report.rejected_series.append(
                {"series": label, "files": [r.name for r in records][:20], "reason": str(exc)}
            )
            continue
        (report.scans_created if created else report.scans_existing).append(scan.pk)
        if created and (bad or unplaced or series.gaps):
            report.incomplete_series.append(
                {
                    "scan": scan.pk,
                    "missing_files": [r["file"] for r in bad],
                    "unreadable_files": [r["file"] for r in unplaced],
                    "gaps": series.gaps,
                }
            )
        progress(0.5 + 0.5 * n / len(groups), f"stored {label}")


def _refuse_if_damaged(bad: list[dict], unplaced: list[dict]) -> None:
    anyway = "or import anyway (import_incomplete) to store the rest with the gap recorded"
    if bad:
        more = f" (and {len(bad) - 1} more file(s))" if len(bad) > 1 else ""
        raise SeriesRejected(
            f"{bad[0]['file']} of this series cannot be used: {bad[0]['reason']}{more}; the series is "
            f"refused whole — replace the file and import the series again, {anyway}"
        )
    if unplaced:
        # Its header is unreadable, so it may be a slice of any series of the import: storing
        # any of them could store one with a hole.
        raise SeriesRejected(
            f"{unplaced[0]['file']} looks like DICOM but cannot be read ({unplaced[0]['reason']}), so "
            "it may be a slice of this series; every series of the import is refused — replace or "
            f"remove the file, {anyway}"
        )


def _parallel_map(func: Callable, items: list) -> Iterator:
    """Prepare files on every core. pydicom is pure Python, so threads would not help.

    A daemonic process (a Celery prefork child) may not start children: there, and for
    small imports where starting workers costs more than it saves, work in-process.
    """
    workers = min(settings.INGEST_WORKERS, os.cpu_count() or 1)
    if workers < 2 or len(items) < 64 or multiprocessing.current_process().daemon:
        yield from map(func, items)
        return
    # fork starts at once, but is only safe without other threads (a threaded web server or
    # listener may hold locks a forked child would inherit locked); then spawn.
    method = "fork" if threading.active_count() == 1 else "spawn"
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        yield from pool.map(func, items, chunksize=16)


def _read_all(items: list[tuple[Path, str]], prepare: Callable, progress: Progress) -> Iterator:
    for i, record in enumerate(_parallel_map(prepare, items)):
        if i % 25 == 0:
            progress(0.5 * (i + 1) / max(len(items), 1), f"read {i + 1} of {len(items)} files")
        yield record


def report_outcome(report: dict) -> tuple[str, str]:
    """(status, error) of a finished import: "failed" with the reasons when nothing was stored."""
    if report.get("scans_created") or report.get("scans_existing"):
        return ImportJob.Status.DONE, ""
    reasons = [r["reason"] for r in report.get("rejected_series", [])][:3]
    counts = Counter(r["reason"] for r in report.get("rejected_files", []))
    reasons += [f"{n} file(s): {reason}" for reason, n in counts.most_common(3)]
    if not reasons:
        reasons = ["the import held no DICOM files"]
    return ImportJob.Status.FAILED, "nothing was imported — " + "; ".join(reasons)


# --- jobs ----------------------------------------------------------------------------------


def uploads_root() -> Path:
    """Raw uploads (identifying, as sent) wait here for their job, and only as long as it runs."""
    return Path(settings.DATA_DIR) / "uploads"


def work_root() -> Path:
    """Unpacked archives of running imports (identifying): on the data volume, swept at start."""
    return Path(settings.DATA_DIR) / "work"


def job_workdir(job: ImportJob) -> Path:
    return work_root() / f"job-{job.pk}"


def import_upload_create(
    *,
    actor: User,
    institution: Institution,
    campaign: Campaign | None,
    files: list[UploadedFile],
    import_incomplete: bool = False,
) -> ImportJob:
    """Keep the uploaded files for their job and queue it on the ingest queue."""
    folder = uploads_root() / uuid.uuid4().hex
    folder.mkdir(parents=True)
    try:
        for i, f in enumerate(files):
            with open(folder / f"{i:05d}-{Path(f.name or 'upload').name[:80]}", "wb") as out:
                for chunk in f.chunks():
                    out.write(chunk)
        with transaction.atomic():
            job = ImportJob.objects.create(
                institution=institution,
                campaign=campaign,
                created_by=actor,
                source=str(folder),
                options={IMPORT_INCOMPLETE: import_incomplete},
            )
            audit_record(
                actor=actor,
                action="import_queued",
                obj=job,
                to_state=job.status,
                files=len(files),
                import_incomplete=import_incomplete,
            )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    # Found by name: the tasks module imports this service, so the service never imports it.
    transaction.on_commit(lambda: task_named("imaging.tasks.import_run").delay(job.pk))
    return job


def import_job_cancel(*, actor: User, job: ImportJob) -> ImportJob:
    """Stop a queued or running import. A running one stops at its next progress step; series
    it stored before stay stored (each is whole). The raw upload is removed at once when the
    job had not started, else by the worker as it stops."""
    was = job.status
    reason = f"cancelled by {actor.username}"
    if not job_fail(
        job,
        reason,
        actor=actor,
        action="import_cancel",
        report={**job.report, "error": reason, "cancelled": True},
    ):
        job.refresh_from_db()
        return job
    if was == ImportJob.Status.QUEUED:
        upload_remove(job)
    job.refresh_from_db()
    return job


def upload_remove(job: ImportJob) -> None:
    """Delete the raw files of an upload job. A server folder (manage.py import_dicom) is the
    user's own and is never touched: only what lies under the uploads folder."""
    source = Path(job.source)
    root = uploads_root().resolve()
    if source.resolve().parent == root:
        shutil.rmtree(source, ignore_errors=True)
    shutil.rmtree(job_workdir(job), ignore_errors=True)


def import_job_run(job: ImportJob, progress: Progress | None = None, *, worker: str = "") -> ImportJob:
    """Run an import job to the end; the job row carries status, progress and report. The raw
    files of an upload are deleted however it ends."""
    # A redelivered message takes over a running import (stale_after=0): its first consumer
    # is gone, or the broker would not have redelivered it.
    if not job_claim(job, worker=worker, stale_after=timedelta(0)):  # finished or cancelled
        upload_remove(job)
        job.refresh_from_db()
        return job

    def report_progress(fraction: float, message: str) -> None:
        if not job_progress(job, fraction, message):
            raise ImportCancelled()
        if progress:
            progress(fraction, message)

    incomplete = bool((job.options or {}).get(IMPORT_INCOMPLETE))
    try:
        data = ingest_path(
            Path(job.source),
            institution=job.institution,
            campaign_id=job.campaign_id,
            progress=report_progress,
            import_incomplete=incomplete,
            workdir=job_workdir(job),
        ).as_dict()
        status, error = report_outcome(data)
        if error:
            data["error"] = error
    except ImportCancelled:
        status, data = "cancelled", {}
    except (ArchiveRejected, FileNotFoundError) as exc:
        status, data = ImportJob.Status.FAILED, {"error": str(exc)}
    except Exception as exc:  # never leave a job "running" forever (time limit, disk full, bug)
        logger.exception("import %s failed", job.pk)
        status = ImportJob.Status.FAILED
        data = {
            "error": f"the import failed unexpectedly ({exc.__class__.__name__}: {exc}); nothing more was stored"
        }
    finally:
        upload_remove(job)
    finished = _job_finish(job, status, data, incomplete)
    _warm_series_metadata(data.get("scans_created", []))
    return finished


def _warm_series_metadata(scan_ids: list[int]) -> None:
    """Build the viewer's DICOM JSON of the new scans here, in the worker, not at their first
    opening in the web process: parsing 200 headers took about a second of the web process per
    scan, and a reading room opens twenty at once (bench/load.py). Best effort: a scan whose JSON
    is not built here is built on first opening, as before."""
    for scan in Scan.objects.filter(pk__in=scan_ids):
        try:
            series_metadata_bytes(scan)
        except Exception:  # a cache, never a reason to fail an import that is already done
            logger.warning("could not build the DICOM JSON of scan %s", scan.pk, exc_info=True)


def _job_finish(job: ImportJob, status: str, data: dict, incomplete: bool) -> ImportJob:
    if status == "cancelled":  # import_job_cancel already closed the job and audited it
        job.refresh_from_db()
        return job
    # Compare-and-swap: a cancel that came in meanwhile is not overwritten.
    job_finish(
        job,
        status,
        actor=job.created_by,
        action="import",
        audit={
            "scans": len(data.get("scans_created", [])),
            "rejected": len(data.get("rejected_files", [])) + len(data.get("rejected_series", [])),
            "import_incomplete": incomplete,
        },
        report=data,
    )
    job.refresh_from_db()
    return job

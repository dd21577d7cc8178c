"""The import of one source into an institution (and optionally a campaign), with a report.

Used alike by the upload API (through a Celery task), `manage.py import_dicom`, the
benchmark and, later, the PACS receivers, so every path gets the same checks.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from platform_core.ingest.collect import ArchiveRejected, collect
from platform_core.ingest.reader import SliceRecord, prepare_or_reason
from platform_core.ingest.series import SeriesRejected, sort_and_check
from platform_core.ingest.store import pseudonym_key, store_series
from platform_core.models import ImportJob, Institution
from platform_core.services.audit import audit_record

Progress = Callable[[float, str], None]


@dataclass
class IngestReport:
    scans_created: list[int] = field(default_factory=list)
    scans_existing: list[int] = field(default_factory=list)
    rejected_files: list[dict] = field(default_factory=list)
    rejected_series: list[dict] = field(default_factory=list)
    files_seen: int = 0

    def as_dict(self) -> dict:
        return {
            "files_seen": self.files_seen,
            "scans_created": self.scans_created,
            "scans_existing": self.scans_existing,
            "rejected_files": self.rejected_files,
            "rejected_series": self.rejected_series,
        }


def ingest_path(
    source: Path,
    *,
    institution: Institution,
    campaign_id: int | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    progress = progress or (lambda fraction, message: None)
    report = IngestReport()
    collected = collect(source, max_archive_bytes=settings.INGEST_MAX_ARCHIVE_BYTES)
    staging = Path(settings.MEDIA_ROOT) / "scans" / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        report.rejected_files.extend(collected.rejected)
        report.files_seen = len(collected.files) + len(collected.rejected)
        prepare = partial(
            prepare_or_reason, staging=staging, key=pseudonym_key(), issuer_prefix=institution.slug
        )
        groups = _read_all(collected.files, collected.names, prepare, report, progress)
        ingest_groups(
            groups, institution=institution, campaign_id=campaign_id, report=report, progress=progress
        )
    finally:
        collected.cleanup()
        shutil.rmtree(staging, ignore_errors=True)
    progress(1.0, "done")
    return report


def ingest_groups(
    groups: dict[tuple[str, str], list[SliceRecord]],
    *,
    institution: Institution,
    campaign_id: int | None,
    report: IngestReport,
    progress: Progress,
) -> None:
    for n, records in enumerate(groups.values(), start=1):
        label = f"series {n} of {len(groups)} ({len(records)} files)"
        try:
            series = sort_and_check(records)
            scan, created = store_series(series, institution=institution, campaign_id=campaign_id)
        except SeriesRejected as exc:
            report.rejected_series.append(
                {"series": label, "files": [r.name for r in records][:20], "reason": str(exc)}
            )
            continue
        (report.scans_created if created else report.scans_existing).append(scan.pk)
        progress(0.5 + 0.5 * n / len(groups), f"stored {label}")


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


def _read_all(
    files: list[Path], names: dict[Path, str], prepare: Callable, report: IngestReport, progress: Progress
) -> dict[tuple[str, str], list[SliceRecord]]:
    groups: dict[tuple[str, str], list[SliceRecord]] = defaultdict(list)
    seen_sops: set[str] = set()
    items = [(path, names.get(path, path.name)) for path in files]
    for i, record in enumerate(_parallel_map(prepare, items)):
        if isinstance(record, dict):
            report.rejected_files.append(record)
            continue
        if record.sop_uid in seen_sops:
            report.rejected_files.append(
                {"file": record.name, "reason": "duplicate of another file in this import"}
            )
            continue
        seen_sops.add(record.sop_uid)
        groups[(record.study_uid, record.series_uid)].append(record)
        if i % 25 == 0:
            progress(0.5 * (i + 1) / max(len(files), 1), f"read {i + 1} of {len(files)} files")
    return groups


def import_job_run(job: ImportJob, progress: Progress | None = None) -> ImportJob:
    """Run an import job to the end; the job row carries status, progress and report."""

    def report_progress(fraction: float, message: str) -> None:
        ImportJob.objects.filter(pk=job.pk).update(progress=round(fraction, 3))
        if progress:
            progress(fraction, message)

    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING)
    try:
        report = ingest_path(
            Path(job.source),
            institution=job.institution,
            campaign_id=job.campaign_id,
            progress=report_progress,
        )
        job.report = report.as_dict()
        job.status = ImportJob.Status.DONE
    except (ArchiveRejected, FileNotFoundError) as exc:
        job.report = {"error": str(exc)}
        job.status = ImportJob.Status.FAILED
    job.progress = 1.0
    job.finished_at = timezone.now()
    job.save(update_fields=["report", "status", "progress", "finished_at"])
    audit_record(
        actor=job.created_by,
        action="import",
        obj=job,
        to_state=job.status,
        scans=len(job.report.get("scans_created", [])),
        rejected=len(job.report.get("rejected_files", [])) + len(job.report.get("rejected_series", [])),
    )
    return job

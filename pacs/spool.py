"""The receiver's spool: series being received, committed and imported.

Layout: <spool>/<institution id>/<series key>-<n>/<association>/{*.dcm, .committed}. Each
association writes its own folder; `.committed` marks one that ended with a normal release (so a
restart knows what is whole). A delivery that starts after the previous one of the same series was
imported gets a new series folder.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from core.models import Institution
from pacs import intake

logger = logging.getLogger(__name__)

COMMITTED = ".committed"  # marker in an association's folder: it ended with a normal release


@dataclass
class SpooledSeries:
    key: str
    institution_id: int
    institution_slug: str
    folder: Path
    last: float
    open: set[int] = field(default_factory=set)  # associations sending it right now
    committed: dict[str, str] = field(default_factory=dict)  # file name -> original SOP UID
    prepared: dict[str, Future] = field(default_factory=dict)  # file name -> prepare_or_reason result
    staging: Path | None = None  # pseudonymised copies of prepared files (under MEDIA_ROOT)
    origin: intake.OriginalSeries | None = None
    expected: int | None = None  # NumberOfSeriesRelatedInstances, when the sender sets it
    senders: set[str] = field(default_factory=set)
    rejected: list[dict] = field(default_factory=list)  # refused at the DIMSE level
    refused: list[dict] = field(default_factory=list)  # SOP classes refused in the same deliveries
    tainted: str = ""  # why the series is discarded (an aborted association)
    recovered: bool = False


def series_key(series_uid: str) -> str:
    return hashlib.sha256(series_uid.encode()).hexdigest()[:32]


def file_name(sop_uid: str) -> str:
    return hashlib.sha256(sop_uid.encode()).hexdigest()[:32] + ".dcm"


def origin_of(ds, series_uid: str) -> intake.OriginalSeries:
    return intake.OriginalSeries(
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        series_uid=series_uid,
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
        header={k: str(ds.get(k, "") or "") for k in intake.ORIGIN_HEADER_KEYWORDS if ds.get(k)},
    )


def recovered_series(spool: Path) -> Iterator[tuple[SpooledSeries, list[Path]]]:
    """After a restart: uncommitted deliveries are dropped; each series with committed files is
    yielded with them (to be prepared and imported once quiet)."""
    slugs = dict(Institution.objects.values_list("pk", "slug"))
    for inst_dir in sorted(p for p in spool.iterdir() if p.is_dir() and p.name.isdigit()):
        for folder in sorted(p for p in inst_dir.iterdir() if p.is_dir()):
            series = SpooledSeries(
                folder.name.split("-")[0],
                int(inst_dir.name),
                slugs.get(int(inst_dir.name), ""),
                folder,
                time.monotonic(),
                recovered=True,
            )
            paths = []
            for token in sorted(p for p in folder.iterdir() if p.is_dir()):
                if not (token / COMMITTED).exists():
                    shutil.rmtree(token, ignore_errors=True)
                    continue
                for path in token.glob("*.dcm"):
                    series.committed[path.name] = path.name
                    paths.append(path)
            if not series.committed or not series.institution_slug:
                shutil.rmtree(folder, ignore_errors=True)
                continue
            logger.info("DICOM listener: %d spooled instance(s) of a series found at start", len(paths))
            yield series, paths


def import_series(series: SpooledSeries, *, ingest: str, spool: Path, worker: str = "") -> bool:
    """Import one series (or queue its import: returns True, the task removes the folder). An
    import run here is claimed under `worker`, the listener's name, so that its restart ends
    an import it was killed in (StorageReceiver.start)."""
    senders = sorted(series.senders) or ["a sender before the listener restarted"]
    source = f"DICOM C-STORE from {', '.join(senders)}"
    extra = {
        "rejected_files": series.rejected,
        "refused_sop_classes": series.refused,
        "received": {
            "senders": senders,
            "instances": len(series.committed),
            "recovered": series.recovered,
        },
    }
    institution = Institution.objects.get(pk=series.institution_id)
    if series.tainted or not series.committed:
        for future in series.prepared.values():
            future.cancel()
        job = intake.job_create(institution=institution, source=source)
        reason = series.tainted or "no instance of the series was committed"
        report = intake.merge_report(intake.empty_report(), extra)
        report["error"] = reason
        report["rejected_series"] = [
            {
                "series": f"series of {len(series.committed)} committed instance(s)",
                "files": [],
                "reason": reason,
            }
        ]
        intake.job_finish(job, status="failed", report=report)
        return False
    if ingest == "celery":
        # Renamed out of the spool tree, so a restart of the listener does not import it twice.
        queued = spool / "queued" / f"{series.key}-{uuid.uuid4().hex[:8]}"
        queued.parent.mkdir(parents=True, exist_ok=True)
        for marker in series.folder.glob(f"*/{COMMITTED}"):
            marker.unlink()  # ingest would list it as a file that is not DICOM
        series.folder.rename(queued)
        job = intake.job_create(
            institution=institution, source=source, report={"spool": str(queued), "pending": extra}
        )
        from platform_core.celery import app

        app.send_task("pacs.tasks.spool_import_run", args=[job.pk])
        return True
    job = intake.job_create(institution=institution, source=source)
    intake.job_running(job, worker=worker)
    try:
        results = [future.result() for name, future in series.prepared.items() if name in series.committed]
    except Exception as exc:  # a worker process died (out of memory?)
        report = {
            **intake.merge_report(intake.empty_report(), extra),
            "error": f"preparing the instances failed: {exc}",
        }
        intake.job_finish(job, status="failed", report=report)
        raise
    if series.origin is not None:
        series.origin.sop_uids = set(series.committed.values())
        origins = {series.origin.series_uid: series.origin}
    else:  # recovered after a restart: read from the files
        origins = intake.read_origins(series.folder)
    intake.job_run_prepared(job, results, origins=origins, origin_source="dimse", extra=extra)
    return False


def report_refused_delivery(
    institution_id: int, sender: str, notes: list, refused: list, received: int
) -> None:
    """A delivery that brought no usable instance still leaves a report for the data manager."""
    extra = {
        "rejected_files": notes,
        "refused_sop_classes": refused,
        "received": {"senders": [sender], "instances": received},
    }
    institution = Institution.objects.get(pk=institution_id)
    job = intake.job_create(institution=institution, source=f"DICOM C-STORE from {sender}")
    report = intake.merge_report(intake.empty_report(), extra)
    names = sorted({str(r.get("name") or r.get("sop_class") or "") for r in refused} - {""})
    # Nothing was stored, so the job failed: the data manager sees why at a glance.
    report["error"] = "nothing was imported — " + (
        f"only SOP classes that are not imported were sent ({', '.join(names)}); only CT series are imported"
        if names
        else "; ".join(str(n.get("reason", "")) for n in notes[:3]) or "no instance was received"
    )
    intake.job_finish(job, status="failed", report=report)

"""The sweep after core.jobs' (at worker start and every 10 minutes): raw, identifying files a
crashed job left behind (the jobs a dead process left "running" are core.jobs' sweep, which runs
first).

Raw uploads, unpacked archives and PACS spools hold the files as they were sent (names, IDs,
dates). Jobs delete theirs however they end; this sweep catches what a killed process could
not. It removes only what belongs to no queued or running job, and what belongs to no job at
all only once it has been untouched for `INGEST_LEFTOVER_AGE_S` (the web process and the
listener write their files before the job row exists).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

from django.conf import settings

from core.temporaries import owner_gone
from imaging.ingest.collect import UNZIP_PREFIX
from imaging.ingest.service import uploads_root, work_root
from imaging.models import ImportJob

logger = logging.getLogger(__name__)

ACTIVE = (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING)


def leftovers_sweep(*, now: float | None = None) -> dict[str, int]:
    """Delete leftovers of jobs no longer queued or running. Runs after core.jobs' sweep at
    worker start, which has failed the imports this node left running. Returns counts."""
    now = time.time() if now is None else now
    removed = (
        _uploads_sweep(now) + _work_sweep(now) + _spool_sweep(now) + _tmp_sweep(now) + scans_tmp_sweep(now)
    )
    if removed:
        logger.info("ingest sweep: %d leftover(s) removed", removed)
    return {"removed": removed}


def _idle_for(path: Path, now: float) -> float:
    """Seconds since anything in `path` last changed."""
    try:
        newest = max((p.stat().st_mtime for p in path.rglob("*")), default=path.stat().st_mtime)
        newest = max(newest, path.stat().st_mtime)
    except OSError:
        return 0.0
    return now - newest


def _stale(path: Path, now: float) -> bool:
    return _idle_for(path, now) > getattr(settings, "INGEST_LEFTOVER_AGE_S", 3600)


def _remove(path: Path) -> int:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return 1


def _active_sources() -> set[str]:
    return set(ImportJob.objects.filter(status__in=ACTIVE).values_list("source", flat=True))


def _uploads_sweep(now: float) -> int:
    root = uploads_root()
    if not root.is_dir():
        return 0
    active = _active_sources()
    known = set(ImportJob.objects.filter(source__startswith=str(root)).values_list("source", flat=True))
    removed = 0
    for folder in root.iterdir():
        if str(folder) in active:
            continue
        if str(folder) in known or _stale(folder, now):
            removed += _remove(folder)
    return removed


def _job_folder_sweep(folders: list[Path], prefix: str, now: float) -> int:
    """Folders named <prefix><job id>: removed unless their job is queued or running."""
    ids = {}
    for folder in folders:
        tail = folder.name.removeprefix(prefix)
        if folder.name.startswith(prefix) and tail.isdigit():
            ids[folder] = int(tail)
    active = set(
        ImportJob.objects.filter(pk__in=ids.values(), status__in=ACTIVE).values_list("pk", flat=True)
    )
    removed = 0
    for folder in folders:
        if folder in ids:
            if ids[folder] not in active:
                removed += _remove(folder)
        elif _stale(folder, now):
            removed += _remove(folder)
    return removed


def _work_sweep(now: float) -> int:
    root = work_root()
    if not root.is_dir():
        return 0
    return _job_folder_sweep(list(root.iterdir()), "job-", now)


def _spool_sweep(now: float) -> int:
    """pull-<job>, stow-<uuid> and queued/<series> of the PACS spool. The listener's own live
    folders (<institution id>/…) are left to it: at its start it imports what was committed
    and drops the rest."""
    # The same folder as pacs.intake.spool_root(), read from settings so that ingest does not
    # import the PACS layer.
    root = Path(getattr(settings, "CURATECT_PACS_SPOOL", Path(settings.DATA_DIR) / "pacs-spool"))
    if not root.is_dir():
        return 0
    removed = _job_folder_sweep(
        [p for p in root.iterdir() if p.name.startswith(("pull-", "stow-"))], "pull-", now
    )
    queued = root / "queued"
    if queued.is_dir():
        spools: dict[str, bool] = {}  # spool folder -> its job is queued or running
        for status, report in ImportJob.objects.filter(report__has_key="spool").values_list(
            "status", "report"
        ):
            path = str(report.get("spool"))
            spools[path] = spools.get(path, False) or status in ACTIVE
        for folder in queued.iterdir():
            waiting = spools.get(str(folder))
            if waiting is False or (waiting is None and _stale(folder, now)):
                removed += _remove(folder)
    return removed


def _tmp_sweep(now: float) -> int:
    """Unpacked archives of older versions, which used the system temp folder."""
    removed = 0
    for folder in Path(tempfile.gettempdir()).glob(f"{UNZIP_PREFIX}*"):
        if _stale(folder, now):
            removed += _remove(folder)
    return removed


def scans_tmp_sweep(now: float | None = None) -> int:
    """Temporary folders of imports under MEDIA_ROOT/scans (.staging-…, .tmp-…; pseudonymised
    copies, never under a published name) whose process is gone: named pid@host, they are
    removed when that process no longer runs on this host, or else once stale (another host's).
    Safe from any process (a live owner's folder is kept): the listener runs it at its start too."""
    now = time.time() if now is None else now
    root = Path(settings.MEDIA_ROOT) / "scans"
    if not root.is_dir():
        return 0
    removed = 0
    for folder in root.iterdir():
        if folder.name.startswith((".staging-", ".tmp-")) and (
            owner_gone(folder.name) or _stale(folder, now)
        ):
            removed += _remove(folder)
    return removed

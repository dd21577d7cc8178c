"""A worker killed while it stored a label volume leaves a temporary file; the sweep at worker
start removes it once its writer is gone, and never touches a live writer's file or a blob."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from annotation.storage import TMP_PREFIX, labels_tmp_sweep, store_labels
from core.jobs.signals import jobs_swept


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _tmp(folder: Path, owner: str, *, age_s: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TMP_PREFIX}abc123~{owner}"
    path.write_bytes(b"half a frame")
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return path


def test_the_sweep_removes_what_a_gone_writer_left_and_keeps_the_rest(settings):
    settings.LABEL_TMP_AGE_S = 3600
    sha = store_labels(np.ones((2, 3, 4), dtype=np.uint8))
    folder = Path(settings.MEDIA_ROOT) / "labels" / sha[:2]
    host = socket.gethostname()
    gone = _tmp(folder, f"{_dead_pid()}@{host}")
    alive = _tmp(folder / ".." / "ff", f"{os.getpid()}@{host}")
    elsewhere = _tmp(folder / ".." / "fe", "1@another-host")
    elsewhere_stale = _tmp(folder / ".." / "fd", "1@another-host", age_s=7200)

    assert labels_tmp_sweep() == 2

    assert not gone.exists() and not elsewhere_stale.exists()
    assert alive.exists() and elsewhere.exists()
    assert (folder / f"{sha}.zst").is_file(), "a stored blob is never a leftover"


def test_a_store_names_its_temporary_file_for_its_process(settings, monkeypatch):
    seen: list[str] = []
    real = os.replace

    def spy(src, dst):  # type: ignore[no-untyped-def]
        seen.append(Path(src).name)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    store_labels(np.full((3, 3, 3), 7, dtype=np.uint8))
    assert seen and seen[0].startswith(TMP_PREFIX)
    assert seen[0].endswith(f"~{os.getpid()}@{socket.gethostname()}")


def test_worker_start_runs_the_sweep(settings):
    folder = Path(settings.MEDIA_ROOT) / "labels" / "00"
    gone = _tmp(folder, f"{_dead_pid()}@{socket.gethostname()}")
    jobs_swept.send_robust(sender=None, hostname="celery@test")
    assert not gone.exists()

"""What the fault tests share: the environment that makes a subprocess (Celery worker, web
server, DICOM listener, verify_storage) use the test's own database, data folder and broker
folder; starting such a process in its own session and SIGKILLing its whole process group;
waiting; and a seeded choice of where inside the work the kill lands.

The test's database is pytest-django's (a file on SQLite, `test_…` on PostgreSQL) and the test
is `transaction=True`, so what the test makes is committed and the children see it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
QUEUES = "ingest,assist,train"
# What a killed job may take to end (done after a re-run, or failed with a reason) once its
# worker is back: generous for a busy 2-core machine, finite so a stuck job fails the test.
SETTLE_S = float(os.environ.get("CURATECT_FAULT_SETTLE_S", "180"))
# The seed of every kill point: a failing run names it, and the same seed kills at the same point.
SEED = int(os.environ.get("CURATECT_FAULT_SEED", "16"))


def kill_point(name: str, low: float, high: float) -> float:
    """A reproducible random point in [low, high) for the fault `name` (seeded by SEED)."""
    return random.Random(f"{SEED}:{name}").uniform(low, high)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The URL of the database this test runs on (pytest-django's test database)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = quote(db.get("HOST") or "", safe="")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{db['NAME']}"


def broker_options(data_dir: Path) -> dict[str, Any]:
    """The embedded default's folder broker under the test's data folder (as settings make it)."""
    folder = data_dir / "broker"
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
        "polling_interval": 0.1,
    }


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: the test's database, folders, keys and broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_SETTINGS"))}
    env.update(
        DJANGO_SETTINGS_MODULE="platform_core.settings",
        DATABASE_URL=database_url(),
        CURATECT_DATA_DIR=str(settings.DATA_DIR),
        CURATECT_MEDIA_ROOT=str(settings.MEDIA_ROOT),
        # The test process's keys: the children must read pseudonyms and sealed secrets it made.
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        CURATECT_PSEUDONYM_KEY=settings.PSEUDONYM_KEY,
        CELERY_BROKER_URL="atomicfs://localhost//",
        CURATECT_INGEST_WORKERS="0",
        CURATECT_LOG_LEVEL="INFO",
        CURATECT_MIN_TEST_CASES=str(getattr(settings, "CURATECT_MIN_TEST_CASES", 5)),
        PYTHONUNBUFFERED="1",
        TCP_NODELAY="1",
    )
    if getattr(settings, "CURATECT_SEALING_KEYS", None):
        env["CURATECT_SEALING_KEYS"] = ",".join(settings.CURATECT_SEALING_KEYS)
    env.update(extra)
    return env


class Child:
    """A subprocess in its own session (so a SIGKILL of its group takes every process it forked),
    its output in a log file; start() again after kill() is the restart."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        log_dir: Path,
        *,
        ready: str,
        env: dict | None = None,
        probe: Callable[[], bool] | None = None,
    ):
        self.name, self.cmd, self.ready, self.probe = name, cmd, ready, probe
        self.log_dir = log_dir
        self.env = env
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.log: Path = log_dir / f"{name}-0.log"

    def start(self, timeout: float = 120.0) -> Child:
        self.starts += 1
        self.log = self.log_dir / f"{self.name}-{self.starts}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                self.cmd,
                cwd=ROOT,
                env=self.env or child_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        wait_for(self._ready, timeout, f"{self.name} to start (log {self.log})")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with {self.process.returncode}:\n{self.output()[-4000:]}"
            )
        return self.ready in self.output() and (self.probe is None or self.probe())

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole process group: the main process and every child it forked."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        _wait_group_gone(self.process.pid)

    def stop(self) -> None:
        """End of the test: a warm shutdown, then a kill for whatever is left."""
        if self.process is None or self.process.poll() is not None:
            if self.process is not None:
                _kill_group(self.process.pid)
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        _kill_group(self.process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies (a killed test run
    leaves no worker behind; its own pool children exit when their parent is gone)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _wait_group_gone(pgid)


def _wait_group_gone(pgid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def worker(log_dir: Path, hostname: str | None = None) -> Child:
    """A real Celery worker (prefork, one child: the production pool) on every queue. Restarted
    under the same node name, as a service restart is: the start-up sweep keys on it."""
    hostname = hostname or f"fault-{uuid.uuid4().hex[:8]}@localhost"
    cmd = [
        sys.executable, "-m", "celery", "-A", "platform_core", "worker",
        "-Q", QUEUES, "-n", hostname, "-c", "1", "--pool", "prefork",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO",
    ]  # fmt: skip
    child = Child("worker", cmd, log_dir, ready=" ready.")
    child.hostname = hostname  # type: ignore[attr-defined]
    return child


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def verify_storage(log_dir: Path, *, strict: bool = True) -> subprocess.CompletedProcess:
    """`manage.py verify_storage` as a separate process on the test's database and data folder,
    `--grace 0 --strict`: every file no row owns is listed and fails it, as a missing or
    damaged one does (strict=False: listed, and only missing or damaged files fail it, as in
    production). Its output is kept in the log
    folder and appended to $CURATECT_FAULTS_LOG (CI prints that file after the fault tests)."""
    done = subprocess.run(
        [sys.executable, "manage.py", "verify_storage", "--grace", "0", *(["--strict"] if strict else [])],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    (log_dir / "verify_storage.log").write_text(done.stdout + done.stderr)
    return done


def record(fault: str, outcome: str, verify: subprocess.CompletedProcess) -> None:
    """One line per fault for the CI log: what the system did, and verify_storage's verdict."""
    path = os.environ.get("CURATECT_FAULTS_LOG")
    summary = (verify.stdout.strip().splitlines() or ["(no output)"])[-1]
    line = f"[{connection.vendor}] {fault}: {outcome} | verify_storage exit {verify.returncode}: {summary}\n"
    print(line, end="")
    if path:
        with open(path, "a") as out:
            out.write(line)

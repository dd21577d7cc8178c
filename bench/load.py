"""A reading room at full speed (issue #16 §1): the production stack on loopback under Locust.

Starts a throwaway PostgreSQL (tools/pg-throwaway.sh) and Redis (tools/redis-throwaway.sh), then
gunicorn with platform_core.settings_production (as docker-compose.yml runs it: one process, 8
threads) and real Celery workers on the `ingest`, `assist` and `train` queues; seeds 20
annotators, 8 checkers, 2 seniors and a data manager on one campaign with 512×512×200 phantoms
imported by the server-folder import (manage.py import_dicom), batches assigned and
pre-segmented; then drives them for 5 minutes (bench/_load_users.py: open a scan, region-grow
clicks, box saves with If-Match, submits; checks and spot checks; batch board, dashboard, an
export) and checks every 2xx save against the database (bench/_load_django.py verify).

Prints JSON on its last line: users, requests, errors, p50_ms and p95_ms (per group: grow, save,
open_scan, verdict, board, and the other calls), revisions_expected, revisions_stored, lost.
Goals: errors 0, lost 0, grow p95 <= 150 ms, save p95 <= 300 ms on 2 cores.

Environment (for development): CURATECT_LOAD_SECONDS (default 300), CURATECT_LOAD_SCANS_PER_ANNOTATOR
(default 2), CURATECT_LOAD_SLICES (default 200), CURATECT_LOAD_KEEP=1 keeps the work folder (logs),
CURATECT_LOAD_PROFILE=1 samples the gunicorn worker's stacks (bench/_load_gunicorn.py) and adds the
top frames to the JSON.
Everything it starts is stopped however it ends.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CAST = {"annotator": 20, "checker": 8, "senior": 2, "manager": 1}
GROUPS = ("grow", "save", "open_scan", "verdict", "board")
INNER = "CURATECT_LOAD_INNER"


def main() -> None:
    if os.environ.get(INNER) != "1":
        sys.exit(_under_throwaway_servers())
    _inner()


def _under_throwaway_servers() -> int:
    """Run this script again inside a throwaway PostgreSQL and Redis; they go when it ends."""
    cmd = [
        str(ROOT / "tools/pg-throwaway.sh"),
        str(ROOT / "tools/redis-throwaway.sh"),
        sys.executable,
        __file__,
    ]
    child = subprocess.Popen(cmd, env={**os.environ, INNER: "1"}, cwd=ROOT)

    def forward(signum, _frame):
        child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    return child.wait()


def _stop_on_signals() -> None:
    def leave(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, leave)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _production_env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "platform_core.settings_production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "CURATECT_PSEUDONYM_KEY": secrets.token_urlsafe(32),
        "CURATECT_SEALING_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        # Plain HTTP on loopback: no TLS proxy in front, so no redirect and no Secure cookies.
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_SECURE_COOKIES": "false",
        "CURATECT_DATA_DIR": str(work / "data"),
        "CURATECT_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


class Stack:
    """gunicorn and the Celery workers as child processes, each in its own session."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work, self.env = work, env
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.port = _free_port()

    def start(self, name: str, cmd: list[str]) -> None:
        log = (self.work / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            cmd, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append((name, proc))

    def start_all(self) -> None:
        py = sys.executable
        # The queues of docker-compose.yml, with fewer pool processes: the machine has 2 cores.
        for queue, concurrency in (("ingest", 1), ("assist", 2), ("train", 1)):
            self.start(
                f"worker-{queue}",
                [
                    py,
                    "-m",
                    "celery",
                    "-A",
                    "platform_core",
                    "worker",
                    "-Q",
                    queue,
                    "-c",
                    str(concurrency),
                    "-n",
                    f"{queue}@load",
                    "--loglevel",
                    "WARNING",
                ],
            )
        self.start(
            "gunicorn",
            [
                py,
                "-m",
                "gunicorn",
                "platform_core.wsgi:application",
                f"--bind=127.0.0.1:{self.port}",
                f"--config={BENCH / '_load_gunicorn.py'}",
                # Not the default ~/.gunicorn/gunicorn.ctl: other gunicorns of this user share it.
                "--no-control-socket",
                "--workers=1",
                "--worker-class=gthread",
                "--threads=8",
                "--timeout=120",
                # Longer than any person's pause between two requests (nginx's default): with
                # gunicorn's 2 s, a save sent on a connection the server was closing failed
                # (a POST is never retried by the client).
                "--keep-alive=75",
                "--graceful-timeout=30",
            ],
        )
        self.wait_until_serving()

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_until_serving(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.host}/login/", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(
            f"error: gunicorn did not serve /login/ within {timeout:.0f} s; see {self.work}/gunicorn.log"
        )

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                tail = (self.work / f"{name}.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"error: {name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        # SIGTERM to the main process only: gunicorn's master finishes its requests, Celery's warm
        # shutdown lets its pool finish the running task (SIGTERM to the whole group killed the
        # pool children at once: WorkerLostError). Whatever is left goes with SIGKILL.
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for _, proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # pool children, orphaned or not
            proc.wait()


def _run(cmd: list[str], env: dict[str, str], what: str, timeout: float) -> None:
    try:
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"error: {what} took longer than {timeout:.0f} s") from None
    if done.returncode != 0:
        raise SystemExit(f"error: {what} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    # Nearest rank: the figure a person actually waited, never an interpolation.
    rank = max(1, int(-(-q * len(ordered) // 100)))
    return round(ordered[rank - 1], 1)


def _inner() -> None:
    _stop_on_signals()
    seconds = float(os.environ.get("CURATECT_LOAD_SECONDS", "300"))
    per_annotator = int(os.environ.get("CURATECT_LOAD_SCANS_PER_ANNOTATOR", "2"))
    slices = int(os.environ.get("CURATECT_LOAD_SLICES", "200"))
    work = Path(tempfile.mkdtemp(prefix="curatect-load-"))
    env = _production_env(work)
    env.update(
        CURATECT_LOAD_CAST=json.dumps(CAST),
        CURATECT_LOAD_SCANS_PER_ANNOTATOR=str(per_annotator),
        CURATECT_LOAD_SLICES=str(slices),
    )
    if os.environ.get("CURATECT_LOAD_PROFILE") == "1":
        env["CURATECT_LOAD_PROFILE"] = str(work / "gunicorn-profile.json")
    # One scan per annotator warm in the web process, with a quarter to spare: the volume for
    # region growing, the head labels for box saves (platform_core/settings.py says why).
    warm_scans = int(CAST["annotator"] * 1.25)
    env["CURATECT_VOLUME_CACHE_BYTES"] = str(warm_scans * slices * 512 * 512 * 2)
    env["CURATECT_LABEL_CACHE_BYTES"] = str(warm_scans * slices * 512 * 512)
    stack = Stack(work, env)
    result: dict | None = None
    try:
        _run([sys.executable, "manage.py", "migrate", "--noinput"], env, "migrate", 600)
        stack.start_all()
        t0 = time.monotonic()
        _run([sys.executable, str(BENCH / "_load_django.py"), "seed", str(work)], env, "seeding", 3600)
        seed_s = time.monotonic() - t0
        stack.check_alive()
        _run(
            [sys.executable, str(BENCH / "_load_users.py"), str(work), stack.host, str(seconds)],
            env,
            "the Locust run",
            seconds + 600,
        )
        stack.check_alive()
        _run([sys.executable, str(BENCH / "_load_django.py"), "verify", str(work)], env, "verification", 1800)
        result = _result(work, per_annotator, slices, seed_s)
    finally:
        stack.stop()
        profile = work / "gunicorn-profile.json"
        if profile.exists() and result is not None:
            top = json.loads(profile.read_text())
            result["profile_self_top"] = top["self"][:12]
            result["profile_inclusive_top"] = top["inclusive"][:25]
            result["profile_busy_samples"] = top["busy"]
        if os.environ.get("CURATECT_LOAD_KEEP") == "1":
            print(f">> kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


def _result(work: Path, per_annotator: int, slices: int, seed_s: float) -> dict:
    driver = json.loads((work / "driver.json").read_text())
    verified = json.loads((work / "verify.json").read_text())
    plan = json.loads((work / "plan.json").read_text())
    samples: dict[str, list[list[float]]] = driver["timings"]
    timings = {g: [ms for _, ms in rows] for g, rows in samples.items()}
    # After the first minute: the shift has arrived and every first scan is open.
    steady = {g: [ms for t, ms in rows if t >= 60] for g, rows in samples.items()}
    groups = list(GROUPS) + sorted(set(timings) - set(GROUPS))
    return {
        "users": driver["users"],
        "requests": driver["requests"],
        "errors": driver["errors"],
        "p50_ms": {g: _percentile(timings.get(g, []), 50) for g in groups},
        "p95_ms": {g: _percentile(timings.get(g, []), 95) for g in groups},
        "counts": {g: len(timings.get(g, [])) for g in groups},
        "p95_ms_after_first_minute": {g: _percentile(steady.get(g, []), 95) for g in GROUPS},
        "revisions_expected": verified["revisions_expected"],
        "revisions_stored": verified["revisions_stored"],
        "lost": verified["lost"],
        "lost_examples": verified["problems"][:5],
        "error_examples": driver["failures"][:5],
        "export": driver["export"],
        "seconds": driver["seconds"],
        "scans": per_annotator * CAST["annotator"],
        "scan_shape": [slices, 512, 512],
        "seed_s": {**plan["seed_s"], "total": round(seed_s, 1)},
        "note": "2 shared CPU cores, busy with other work: figures measured under contention",
    }


if __name__ == "__main__":
    main()

"""A reading room at full speed (issue #16 §1): the production stack on loopback under Locust.

Starts a throwaway PostgreSQL (tools/pg-throwaway.sh) and Redis (tools/redis-throwaway.sh), then
the web tier as docker-compose.yml runs it: nginx routing /dicomweb/ to one gunicorn pool and
everything else to another (deploy/nginx/curatect.conf.template, deploy/gunicorn.conf.py, the
production settings), and real Celery workers on the `ingest`, `assist` and `train` queues; seeds
20 annotators, 8 checkers, 2 seniors and a data manager on one campaign with 512×512×200 phantoms
imported by the server-folder import (manage.py import_dicom), an earlier batch of 2 scans curated
and approved through the real QC services (the data manager exports it during the run), batches
assigned and pre-segmented (kept between runs: bench/_load_seedcache.py); then drives them for 5 minutes
(bench/_load_users.py: open a scan, region-grow clicks, box saves with If-Match, submits; checks
and spot checks; batch board, dashboard, an export) and checks every 2xx save against the database
(bench/_load_django.py verify).

Prints JSON on its last line: users, requests, errors, p50_ms and p95_ms (per group: grow, save,
open_scan, verdict, board, and the other calls), revisions_expected, revisions_stored, lost, and
`breakdown_ms`: per group, where a request's time went, matched request by request between the
client and the gunicorn thread that served it (bench/_load_gunicorn.py): `queue` (router and
gunicorn, before a thread had it), `server` (in the thread), its `cpu` (the thread's own CPU
time; the rest of `server` is waiting: for the GIL, the CPU, the disk, the database), `db`,
`volume` (the CT volume cache), `grow` (numpy/skimage), `labels` (the head labels: warm cache or
decode), `encode` (the new revision's zstd) and `payload` (the box's decode).
Goals: errors 0, lost 0, grow p95 <= 150 ms, save p95 <= 300 ms on 2 cores.

Environment (for development): CURATECT_LOAD_SECONDS (default 300), CURATECT_LOAD_SCANS_PER_ANNOTATOR
(default 2), CURATECT_LOAD_SLICES (default 200), CURATECT_LOAD_TOPOLOGY (`split`, the default: the
router, two API replicas routed by scan and the frames pool; `single`: one gunicorn serving everything, as before #16), CURATECT_LOAD_KEEP=1
keeps the work folder (logs), CURATECT_LOAD_SEED_CACHE=0 seeds afresh and keeps nothing,
CURATECT_LOAD_PROFILE=1 samples the API worker's stacks (bench/_load_gunicorn.py) and adds the
top frames to the JSON.
Needs nginx for `split` (Debian: tools/apt-install.sh nginx-light).
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

import _load_seedcache as seedcache  # bench/ is this script's folder, first on sys.path

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
    # Its own process group: a signal goes to the wrappers, the inner run and the seeding child
    # alike (bash waits for its child before it runs a trap, so it never forwards one).
    child = subprocess.Popen(cmd, env={**os.environ, INNER: "1"}, cwd=ROOT, start_new_session=True)

    def forward(signum, _frame):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)

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
    """The router, gunicorn pools and Celery workers as child processes, each in its own session."""

    def __init__(self, work: Path, env: dict[str, str], topology: str) -> None:
        self.work, self.env, self.topology = work, env, topology
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.port = _free_port()

    def start(self, name: str, cmd: list[str], **extra_env: str) -> None:
        log = (self.work / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            cmd,
            env={**self.env, **extra_env},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((name, proc))

    def start_all(self) -> None:
        self.start_workers()
        self.start_web()

    def start_workers(self) -> None:
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

    def start_web(self) -> None:
        if self.topology == "single":
            # One process serving frames and API alike, as docker-compose.yml did before #16.
            self.start_pool("api", self.port)
            self.wait_until_serving(self.port)
            return
        api, api_2, dicomweb = _free_port(), _free_port(), _free_port()
        self.start_pool("api", api)
        self.start_pool("api", api_2, replica="api-2")
        self.start_pool("dicomweb", dicomweb)
        self.start_router((api, api_2), dicomweb)
        for port in (api, api_2, dicomweb, self.port):
            self.wait_until_serving(port)

    def start_pool(self, pool: str, port: int, replica: str = "") -> None:
        """A gunicorn pool with deploy/gunicorn.conf.py (read by bench/_load_gunicorn.py);
        `replica` names a second process of the same pool."""
        name = replica or pool
        self.start(
            f"gunicorn-{name}",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "platform_core.wsgi:application",
                f"--config={BENCH / '_load_gunicorn.py'}",
                # Not the default ~/.gunicorn/gunicorn.ctl: other gunicorns of this user share it.
                "--no-control-socket",
            ],
            CURATECT_WEB_POOL=pool,
            CURATECT_WEB_BIND=f"127.0.0.1:{port}",
            CURATECT_LOAD_REQUESTS=str(self.work / f"requests-{name}.json"),
            # Only the first API replica is sampled: all would write the one profile file.
            **({} if name == "api" else {"CURATECT_LOAD_PROFILE": ""}),
        )

    def start_router(self, api: tuple[int, int], dicomweb: int) -> None:
        nginx = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
        if nginx is None:
            raise SystemExit(
                "error: nginx not found (the router of the split topology): tools/apt-install.sh "
                "nginx-light, or CURATECT_LOAD_TOPOLOGY=single"
            )
        prefix = self.work / "nginx"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        site = (ROOT / "deploy/nginx/curatect.conf.template").read_text()
        for name, value in (
            ("CURATECT_API_UPSTREAM", f"127.0.0.1:{api[0]}"),
            ("CURATECT_API_UPSTREAM_2", f"127.0.0.1:{api[1]}"),
            ("CURATECT_DICOMWEB_UPSTREAM", f"127.0.0.1:{dicomweb}"),
            ("CURATECT_ROUTER_LISTEN", f"127.0.0.1:{self.port}"),
        ):
            site = site.replace("${" + name + "}", value)
        (prefix / "curatect.conf").write_text(site)
        temp = "\n".join(f"    {sub}_temp_path {prefix / sub};" for sub in ("fastcgi", "uwsgi", "scgi"))
        (prefix / "nginx.conf").write_text(
            # root's workers would otherwise run as nobody, who cannot enter the private work folder
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"""daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix / "body"};
    proxy_temp_path {prefix / "proxy"};
{temp}
    include {prefix / "curatect.conf"};
}}
"""
        )
        self.start(
            "nginx",
            [
                nginx,
                "-p",
                str(prefix),
                "-e",
                str(self.work / "nginx-error.log"),
                "-c",
                str(prefix / "nginx.conf"),
            ],
        )

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_until_serving(self, port: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(
            f"error: nothing served /login/ on port {port} within {timeout:.0f} s; see the logs in {self.work}"
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
    topology = os.environ.get("CURATECT_LOAD_TOPOLOGY", "split")
    if topology not in ("split", "single"):
        raise SystemExit(f"error: CURATECT_LOAD_TOPOLOGY must be split or single, not {topology!r}")
    # What the rest of the machine was doing: on shared cores the figures are as good as this.
    load_before = round(os.getloadavg()[0], 2)
    stack = Stack(work, env, topology)
    seed_params = {"cast": CAST, "per_annotator": per_annotator, "slices": slices}
    key = seedcache.cache_key(seed_params)
    result: dict | None = None
    try:
        t0 = time.monotonic()
        cached = seedcache.restore(key, work, env)
        # After a restore: a no-op that proves the dump's schema is the code's.
        _run([sys.executable, "manage.py", "migrate", "--noinput"], env, "migrate", 600)
        stack.start_workers()
        if not cached:
            _run([sys.executable, str(BENCH / "_load_django.py"), "seed", str(work)], env, "seeding", 7200)
            seedcache.save(key, seed_params, work, env)
        seed_s = time.monotonic() - t0
        stack.start_web()
        stack.check_alive()
        _run(
            [sys.executable, str(BENCH / "_load_users.py"), str(work), stack.host, str(seconds)],
            env,
            "the Locust run",
            seconds + 600,
        )
        load_end = round(os.getloadavg()[0], 2)
        stack.check_alive()
        _run([sys.executable, str(BENCH / "_load_django.py"), "verify", str(work)], env, "verification", 1800)
        stack.stop()  # the pools write their request timings and profiles as they exit
        result = _result(work, per_annotator, slices, seed_s)
        result.update(topology=topology, seed_cached=cached)
        result["load_average"] = {"before": load_before, "end_of_run": load_end}
        profile = work / "gunicorn-profile.json"
        if profile.exists():
            top = json.loads(profile.read_text())
            result["profile_self_top"] = top["self"][:12]
            result["profile_inclusive_top"] = top["inclusive"][:25]
            result["profile_busy_samples"] = top["busy"]
    finally:
        stack.stop()
        if os.environ.get("CURATECT_LOAD_KEEP") == "1":
            print(f">> kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


def _result(work: Path, per_annotator: int, slices: int, seed_s: float) -> dict:
    driver = json.loads((work / "driver.json").read_text())
    verified = json.loads((work / "verify.json").read_text())
    plan = json.loads((work / "plan.json").read_text())
    samples: dict[str, list[list]] = driver["timings"]  # [seconds since start, ms, request id]
    timings = {g: [row[1] for row in rows] for g, rows in samples.items()}
    # After the first minute: the shift has arrived and every first scan is open.
    steady = {g: [row[1] for row in rows if row[0] >= 60] for g, rows in samples.items()}
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
        "driver_cpu_s": driver.get("driver_cpu_s"),
        "scans": per_annotator * CAST["annotator"],
        "scan_shape": [slices, 512, 512],
        "seed_s": {**plan["seed_s"], "total": round(seed_s, 1)},
        "breakdown_ms": _breakdown(work, samples),
        "note": (
            f"{os.cpu_count()} CPU cores shared by the whole stack and the load driver; load_average "
            "says how busy the machine was before the stack started (others' work) and at the end"
        ),
        "breakdown_note": "[p50, p95] per part; queue = client - server (router + gunicorn before a thread)",
    }


BREAKDOWN_GROUPS = ("grow", "save", "frames", "annotation", "labels", "scan")


def _breakdown(work: Path, samples: dict[str, list[list]]) -> dict:
    """Per group, p50 and p95 of each part of a request's time, matched by request id between
    the client's wait and the serving thread's record (bench/_load_gunicorn.py)."""
    served: dict[str, dict] = {}
    for path in work.glob("requests-*.json"):
        for row in json.loads(path.read_text()):
            served[row["id"]] = row
    out: dict[str, dict] = {}
    for group in BREAKDOWN_GROUPS:
        parts: dict[str, list[float]] = {}
        for _, client_ms, rid in samples.get(group, []):
            row = served.get(rid)
            if row is None:
                continue
            parts.setdefault("client", []).append(client_ms)
            parts.setdefault("queue", []).append(max(0.0, client_ms - row["server"]))
            for name, ms in row.items():
                if isinstance(ms, (int, float)):
                    parts.setdefault(name, []).append(ms)
        if parts:
            out[group] = {
                "matched": len(parts["client"]),
                **{name: [_percentile(v, 50), _percentile(v, 95)] for name, v in parts.items()},
            }
    return out


if __name__ == "__main__":
    main()

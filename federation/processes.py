"""Starting and stopping Flower's processes: the coordinator's SuperLink and a site's SuperNode,
and submitting the Flower App to the SuperLink (`flwr run`).

Each process gets its own FLWR_HOME (never ~/.flwr) and starts in its own session. Flower's
SuperLink and SuperNode start a SuperExec in a new session of its own, which starts the
ServerApp and ClientApp processes, so a process group kill misses them: stop() ends the whole
process tree (psutil) — SIGTERM, a grace period, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import psutil
from django.conf import settings
from django.db import connection

from core.api_errors import DomainError

BIN = Path(sys.executable).parent  # flower-superlink, flower-supernode, flwr: beside this Python
APP_DIR = Path(__file__).resolve().parent / "flower" / "flower_app"  # the Flower App (a FAB once submitted)
SECAGG_APP_DIR = APP_DIR.with_name("flower_app_secagg")  # the same with secure aggregation (SecAgg+)
CONNECTION = "curatect"  # the SuperLink connection name in FLWR_HOME/config.toml


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise DomainError(f"{address!r} is not host:port (e.g. 10.0.0.5:9091)", code="bad_address")
    return host.strip("[]"), int(port)


def is_loopback(address: str) -> bool:
    host, _ = split_address(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def database_url() -> str:
    """This process's database as a URL, for the Flower processes' Django (the ServerApp and
    ClientApp record rounds through the services)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    from urllib.parse import quote

    user, password = quote(db.get("USER") or "", safe=""), quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{quote(db.get('HOST') or '', safe='')}{port}/{db['NAME']}"


def flower_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a Flower process: this CurateCT's database, folders and keys (the
    ServerApp / ClientApp it starts set Django up with them), and its own FLWR_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        FLWR_HOME=str(home),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join([str(settings.BASE_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "platform_core.settings"),
        DATABASE_URL=database_url(),
        CURATECT_DATA_DIR=str(settings.DATA_DIR),
        CURATECT_MEDIA_ROOT=str(settings.MEDIA_ROOT),
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        CURATECT_PSEUDONYM_KEY=settings.PSEUDONYM_KEY,
        CURATECT_MIN_TEST_CASES=str(getattr(settings, "CURATECT_MIN_TEST_CASES", 5)),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    out: IO[bytes]
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def superlink_command(address: str, *, cert: str = "", key: str = "", ca: str = "") -> list[str]:
    """The SuperLink serving the Fleet, Control and runtime APIs on one HTTP port (Flower 1.41)."""
    host, port = split_address(address)
    cmd = [
        str(BIN / "flower-superlink"),
        "--host",
        host,
        "--port",
        str(port),
        "--database",
        ":flwr-in-memory:",
    ]
    if cert:
        return (
            cmd + ["--ssl-certfile", cert, "--ssl-keyfile", key] + (["--ssl-ca-certfile", ca] if ca else [])
        )
    return [*cmd, "--insecure"]


def supernode_command(address: str, node_config: dict[str, str | int], *, ca: str = "") -> list[str]:
    pairs = " ".join(f'{k}="{v}"' if isinstance(v, str) else f"{k}={v}" for k, v in node_config.items())
    cmd = [
        str(BIN / "flower-supernode"),
        "--superlink",
        address,
        "--port",
        str(free_port()),  # its runtime API (the ClientApp talks to it), loopback only
        "--node-config",
        pairs,
    ]
    return cmd + (["--root-certificates", ca] if ca else ["--insecure"])


def superlink_start(address: str, home: Path, *, cert: str = "", key: str = "", ca: str = "", extra_env=None):
    return _start(
        superlink_command(address, cert=cert, key=key, ca=ca),
        flower_env(home, extra_env),
        home / "superlink.log",
    )


def supernode_start(address: str, home: Path, node_config: dict, *, ca: str = "", extra_env=None):
    return _start(
        supernode_command(address, node_config, ca=ca), flower_env(home, extra_env), home / "supernode.log"
    )


def write_connection(home: Path, address: str, *, ca: str = "") -> None:
    """FLWR_HOME/config.toml: the SuperLink connection `flwr run` and `flwr ls` use."""
    home.mkdir(parents=True, exist_ok=True)
    tls = f'root-certificates = "{ca}"' if ca else "insecure = true"
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\naddress = "{address}"\n{tls}\n'
    )


def _flwr(home: Path, *args: str, timeout: float = 120) -> dict:
    try:
        done = subprocess.run(
            [str(BIN / "flwr"), *args, "--format", "json"],
            env=flower_env(home),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(home),
        )
    except subprocess.TimeoutExpired:
        # A busy machine can take over a minute to start the CLI: a status poll that times out
        # says nothing about the run, so it must not fail it (app_submit retries until its deadline).
        return {"success": False, "error-message": f"`flwr {args[0]}` took longer than {timeout:.0f} s"}
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"success": False, "error-message": (done.stdout + done.stderr)[-2000:]}


def app_submit(
    home: Path, run_config: dict[str, int | str], *, wait_s: float = 60, app_dir: Path = APP_DIR
) -> str:
    """Submit the Flower App to the SuperLink (retrying while it starts); the Flower run id."""
    overrides = " ".join(f'{k}="{v}"' if isinstance(v, str) else f"{k}={v}" for k, v in run_config.items())
    deadline = time.monotonic() + wait_s
    while True:
        out = _flwr(home, "run", str(app_dir), "--run-config", overrides)
        if out.get("success"):
            return str(out["run-id"])
        if time.monotonic() > deadline:
            raise DomainError(
                f"the SuperLink did not take the Flower App: {out.get('error-message', out)}",
                code="flower_submit",
            )
        time.sleep(1.0)


def app_status(home: Path, flower_run_id: str) -> dict:
    """{"status": "running" | "finished:completed" | "finished:failed" | ..., "status-details"}."""
    out = _flwr(home, "ls", "--run-id", flower_run_id, timeout=60)
    runs = out.get("runs") or []
    return runs[0] if runs else {"status": "unknown", "status-details": out.get("error-message", "")}


def stop(process: subprocess.Popen | None, grace_s: float = 10.0) -> None:
    """End the process and every process it started (whatever their session), then reap it."""
    if process is None:
        return
    try:
        tree = [psutil.Process(process.pid)]
        tree += tree[0].children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(tree, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)

"""Start the web server and a Celery worker together, and stop them without losing work.

    python -m platform_core.runner [--host H] [--port P] [--no-worker] [--notice FILE]

Why not honcho: on Ctrl-C it sends SIGTERM to the worker and SIGKILL five seconds later, which
loses the task that is running (the filesystem broker has no "unacked" state on disk), and on
SIGHUP it leaves orphans. Here each child runs in its own session, so a terminal's Ctrl-C reaches
only this supervisor, which then stops the children the way each one needs:

- gunicorn gets SIGTERM (graceful: finishes the requests it is serving);
- the Celery worker's main process gets SIGQUIT (cold shutdown: unacknowledged messages go
  back to the queue, so a task that was running runs again at the next start).

If either child dies on its own, the other is stopped and we exit non-zero, so a half-running
platform never looks healthy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

# torch on CPU runs 1.7-2x faster with tcmalloc (Debian libtcmalloc-minimal4); optional.
TCMALLOC = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
# How long children get to stop before they are killed. gunicorn's graceful timeout is shorter,
# so a stuck request cannot use up the worker's time to restore its messages.
STOP_GRACE_S = 20.0
WEB_GRACEFUL_S = 15
READY_TIMEOUT_S = 90.0
POLL_S = 0.2
RESIGNAL_S = 5.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m platform_core.runner", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--no-worker", action="store_true", help="start only the web server")
    parser.add_argument(
        "--dicom-port",
        type=int,
        default=int(os.environ.get("DICOM_PORT", "11112")),
        help="port of the DICOM C-STORE listener (AE title CURATECT); 0 turns it off",
    )
    parser.add_argument(
        "--notice", type=Path, help="a text file (e.g. the demo logins) to print once the web server answers"
    )
    return parser.parse_args(argv)


def prepare_broker() -> None:
    """kombu's filesystem transport creates only its control folder; the queue folders must exist."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_core.settings")
    from django.conf import settings

    from platform_core import broker

    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None)
    if options:
        broker.ensure_folders(options)


def port_is_free(host: str, port: int) -> bool:
    """Checked before starting: otherwise the readiness probe could be answered by another server."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def web_command(host: str, port: int) -> list[str]:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # One process with threads, not several processes: the decoded-volume cache lives in the
    # process, and region-growing clicks must find it warm.
    return [
        sys.executable, "-m", "gunicorn", "platform_core.wsgi:application",
        "--bind", bind,
        "--workers", "1",
        "--worker-class", "gthread",
        "--threads", "8",
        "--timeout", "120",
        "--graceful-timeout", str(WEB_GRACEFUL_S),
        "--access-logfile", "-",
        # gunicorn 27's control socket lives at one path per user (~/.gunicorn/gunicorn.ctl), so
        # a second instance (another PORT, a test run) would fight over it; we do not use it.
        "--no-control-socket",
    ]  # fmt: skip


def worker_command() -> list[str]:
    # -B embeds beat (development only; production runs one `celery beat` service).
    return [
        sys.executable, "-m", "celery", "-A", "platform_core", "worker",
        "-Q", "ingest,assist,train",
        "-c", "2",
        "-B", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
        "--loglevel", "INFO",
    ]  # fmt: skip


def listener_command(host: str, port: int) -> list[str]:
    return [
        sys.executable, "manage.py", "dicom_listener",
        f"--host={host}", f"--port={port}", "--ae-title=CURATECT", "--quiet-seconds=5",
    ]  # fmt: skip


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    if TCMALLOC.exists():
        env["LD_PRELOAD"] = " ".join(filter(None, [str(TCMALLOC), env.get("LD_PRELOAD", "")]))
    return env


def probe_url(host: str, port: int) -> str:
    # A wildcard bind answers on loopback; probing the wildcard address itself does not work.
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def answers(url: str) -> bool:
    """Any HTTP answer (a redirect to /login/, a 404) means Django is serving."""
    try:
        # Django loads the URLconf on the first request, which can take a few seconds.
        with urllib.request.urlopen(url + "login/", timeout=10):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


class Supervisor:
    def __init__(self) -> None:
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stop_requested: int | None = None

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        # Own session: a terminal's Ctrl-C or SIGHUP reaches only us, and we decide how each
        # child stops. It also gives each child a process group we can kill as a whole.
        self.children[name] = subprocess.Popen(cmd, env=env, start_new_session=True)

    def request_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stop_requested = signum

    def signal_children(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is None:
                # SIGQUIT makes Celery restore unacknowledged messages; SIGTERM (warm shutdown)
                # would wait for the running task, which may take longer than we can wait.
                proc.send_signal(signal.SIGQUIT if name == "worker" else signal.SIGTERM)

    def dead_child(self) -> tuple[str, int] | None:
        for name, proc in self.children.items():
            code = proc.poll()
            if code is not None:
                return name, code
        return None

    def stop(self) -> None:
        deadline = time.monotonic() + STOP_GRACE_S
        next_nudge = 0.0
        while time.monotonic() < deadline and any(p.poll() is None for p in self.children.values()):
            if time.monotonic() >= next_nudge:
                self.signal_children()
                # Repeat: a worker still booting when the first signal came ignores it (seen
                # here: SIGQUIT during Celery's start-up is lost). Cold shutdown is idempotent.
                next_nudge = time.monotonic() + RESIGNAL_S
            time.sleep(POLL_S)
        for name, proc in self.children.items():
            if proc.poll() is None:
                print(f"runner: {name} did not stop in {STOP_GRACE_S:.0f} s; killing it", file=sys.stderr)
            # Kill the whole group as well: pool children or gunicorn workers left behind by a
            # main process that died would otherwise keep the port or the queue busy.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def print_ready(url: str, notice: Path | None) -> None:
    lines = ["", f"CurateCT is running at {url}  (Ctrl-C stops the web server and the worker)"]
    if notice and notice.is_file():
        lines.append(notice.read_text().rstrip())
    print("\n".join([*lines, ""]), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not port_is_free(args.host, args.port):
        print(f"runner: {args.host}:{args.port} is in use; choose another with PORT=...", file=sys.stderr)
        return 2
    prepare_broker()

    sup = Supervisor()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, sup.request_stop)

    url = probe_url(args.host, args.port)
    sup.start("web", web_command(args.host, args.port))
    if not args.no_worker:
        sup.start("worker", worker_command(), env=worker_env())
    if args.dicom_port:
        if port_is_free(args.host, args.dicom_port):
            sup.start("dicom-listener", listener_command(args.host, args.dicom_port))
            print(f"runner: DICOM C-STORE listener on {args.host}:{args.dicom_port}, AE title CURATECT")
        else:
            print(
                f"runner: port {args.dicom_port} is in use; no DICOM listener (set DICOM_PORT)",
                file=sys.stderr,
            )

    ready = False
    started = time.monotonic()
    exit_code = 0
    while sup.stop_requested is None:
        dead = sup.dead_child()
        if dead:
            name, code = dead
            print(f"runner: {name} exited with status {code}; stopping the rest", file=sys.stderr)
            # A child killed by a signal reports -N; exit as a shell would (128 + N).
            exit_code = 128 - code if code < 0 else (code or 1)
            break
        if not ready:
            if answers(url):
                ready = True
                print_ready(url, args.notice)
            elif time.monotonic() - started > READY_TIMEOUT_S:
                print(
                    f"runner: the web server did not answer at {url} in {READY_TIMEOUT_S:.0f} s",
                    file=sys.stderr,
                )
                exit_code = 1
                break
        time.sleep(POLL_S)

    if sup.stop_requested is not None:
        print(f"runner: {signal.Signals(sup.stop_requested).name} received; stopping", file=sys.stderr)
    sup.stop()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

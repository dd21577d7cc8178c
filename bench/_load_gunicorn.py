"""gunicorn config of bench/load.py: deploy/gunicorn.conf.py (the pools of docker-compose.yml),
plus what the bench measures inside the worker.

CURATECT_LOAD_REQUESTS=FILE: per request served, where its time went in the thread that served
it, keyed by the client's X-Request-Id: `server` (wall, from the thread taking the request to the
response), `cpu` (that thread's CPU time), `db` (the database, with `n` queries), `volume` (the CT
volume cache), `grow` (grow_region: numpy/skimage), `labels` (the head labels: warm or decoded),
`encode` (zstd of a new revision) and `payload` (the box's base64/gzip decode). Written as JSON at
worker exit.

CURATECT_LOAD_PROFILE=FILE: a sampling profiler in the worker (py-spy is not installed, and
cProfile sees only the thread that starts it). Every 5 ms a daemon thread reads the stacks of all
request threads (sys._current_frames) and counts, per busy thread, the innermost frame of the
project's own code and the whole chain of project frames. Threads waiting for a request are not
counted. At worker exit it writes FILE as JSON: samples, and the top frames by self and by
inclusive count.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
VENV = os.path.join(ROOT, ".venv")

# The production pools' settings, then this file's hooks (gunicorn reads one config file).
_deploy = os.path.join(ROOT, "deploy", "gunicorn.conf.py")
exec(compile(Path(_deploy).read_text(), _deploy, "exec"))

INTERVAL_S = 0.005
_self: collections.Counter[str] = collections.Counter()
_inclusive: collections.Counter[str] = collections.Counter()
_samples = {"busy": 0, "ticks": 0}
_stop = threading.Event()

_local = threading.local()
_served: list[dict] = []
_served_lock = threading.Lock()
# (module, function, part): the calls whose time a request record splits out.
_TIMED = (
    ("imaging.volume_cache", "load_volume", "volume"),
    ("annotation.region_grow", "grow_region", "grow"),
    ("annotation.storage", "take_labels", "labels"),
    ("annotation.label_codec", "encode_volume", "encode"),
    ("annotation.label_codec", "decode_payload", "payload"),
)


def _ours(filename: str) -> bool:
    return filename.startswith(ROOT) and not filename.startswith(VENV)


def _where(frame) -> str:
    code = frame.f_code
    return f"{os.path.relpath(code.co_filename, ROOT)}:{code.co_name}"


def _sample(me: int) -> None:
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        chain, f = [], frame
        while f is not None:  # innermost first
            if _ours(f.f_code.co_filename):
                chain.append(_where(f))
            f = f.f_back
        # Idle gthread workers sit in the pool's queue with no project frame: not a request.
        if not chain:
            continue
        _samples["busy"] += 1
        _self[chain[0]] += 1
        for where in set(chain):
            _inclusive[where] += 1


def _run() -> None:
    me = threading.get_ident()
    while not _stop.wait(INTERVAL_S):
        _samples["ticks"] += 1
        _sample(me)


# --- per-request record ---------------------------------------------------------------------


def _add(part: str, ms: float) -> None:
    parts = getattr(_local, "parts", None)
    if parts is not None:
        parts[part] = parts.get(part, 0.0) + ms


def _timed(fn, part: str):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _add(part, (time.perf_counter() - t0) * 1000)

    return wrapper


def _db_timer(execute, sql, params, many, context):
    t0 = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        _add("db", (time.perf_counter() - t0) * 1000)
        _add("n", 1)


def _install_timers() -> None:
    import importlib

    for module_name, name, part in _TIMED:
        module = importlib.import_module(module_name)
        setattr(module, name, _timed(getattr(module, name), part))


def post_worker_init(worker) -> None:
    if os.environ.get("CURATECT_LOAD_PROFILE"):
        threading.Thread(target=_run, name="load-profiler", daemon=True).start()
    if os.environ.get("CURATECT_LOAD_REQUESTS"):
        _install_timers()


def pre_request(worker, req) -> None:
    if not os.environ.get("CURATECT_LOAD_REQUESTS"):
        return
    from django.db import connection

    # One wrapper per thread's connection object (it outlives reconnects: CONN_MAX_AGE).
    if _db_timer not in connection.execute_wrappers:
        connection.execute_wrappers.append(_db_timer)
    _local.parts = {}
    _local.start = (time.perf_counter(), time.thread_time())


def post_request(worker, req, environ, resp) -> None:
    parts = getattr(_local, "parts", None)
    if parts is None:
        return
    wall0, cpu0 = _local.start
    request_id = next((v for k, v in req.headers if k == "X-REQUEST-ID"), None)
    _local.parts = None
    if request_id is None:
        return
    row = {
        "id": request_id,
        "server": round((time.perf_counter() - wall0) * 1000, 2),
        "cpu": round((time.thread_time() - cpu0) * 1000, 2),
        **{k: round(v, 2) for k, v in parts.items()},
    }
    with _served_lock:
        _served.append(row)


def worker_exit(server, worker) -> None:
    requests = os.environ.get("CURATECT_LOAD_REQUESTS")
    if requests:
        with _served_lock:
            Path(requests).write_text(json.dumps(_served))
    target = os.environ.get("CURATECT_LOAD_PROFILE")
    if not target:
        return
    _stop.set()
    time.sleep(INTERVAL_S * 2)
    out = {
        "interval_ms": INTERVAL_S * 1000,
        **_samples,
        "self": _self.most_common(40),
        "inclusive": _inclusive.most_common(60),
    }
    Path(target).write_text(json.dumps(out, indent=1))

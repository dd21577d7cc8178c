"""gunicorn config of bench/load.py: with CURATECT_LOAD_PROFILE=FILE, a sampling profiler in the
worker (py-spy is not installed, and cProfile sees only the thread that starts it).

Every 5 ms a daemon thread reads the stacks of all request threads (sys._current_frames) and
counts, per busy thread, the innermost frame of the project's own code and the whole chain of
project frames. Threads waiting for a request are not counted. At worker exit it writes
FILE as JSON: samples, and the top frames by self and by inclusive count.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
VENV = os.path.join(ROOT, ".venv")
INTERVAL_S = 0.005
_self: collections.Counter[str] = collections.Counter()
_inclusive: collections.Counter[str] = collections.Counter()
_samples = {"busy": 0, "ticks": 0}
_stop = threading.Event()


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


def post_worker_init(worker) -> None:
    if os.environ.get("CURATECT_LOAD_PROFILE"):
        threading.Thread(target=_run, name="load-profiler", daemon=True).start()


def worker_exit(server, worker) -> None:
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

"""Pools that prepare (read, check, pseudonymise) instances while more arrive.

A process pool where this process may start children (the listener, a benchmark); one thread
where it may not (a Celery prefork child is daemonic) — then preparing still overlaps the
network waits of a pull.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, wait


def _warm() -> int:
    import platform_core.ingest.reader  # noqa: F401 (what every task of the pool will need)

    return os.getpid()


def prepare_pool(workers: int) -> Executor:
    if workers < 1 or multiprocessing.current_process().daemon:
        return ThreadPoolExecutor(1, thread_name_prefix="dicom-prepare")
    # spawn, not fork: the parent holds database connections and threads.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    # Start every worker now (they import pydicom and numpy), not when the first series arrives.
    wait([pool.submit(_warm) for _ in range(workers)])
    return pool

"""Pools that prepare (read, check, pseudonymise) instances while more arrive.

A process pool where this process may start children (the listener, a benchmark); one thread
where it may not (a Celery prefork child is daemonic) — then preparing still overlaps the
network waits of a pull.

Instances arrive one by one, each a few milliseconds of work; a process pool costs about a
millisecond of this process's time per task (pickling, pipes, its manager thread), taken
from the thread that is receiving. So calls are handed over in batches: while every worker
is busy, new calls wait and go together as one task (`BatchingExecutor`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from core.cpus import usable_cpus

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_freed_memory() -> None:
    """Let glibc reuse freed buffers of up to a few MB instead of unmapping them: every
    instance passes through several half-megabyte buffers, and fresh mappings for each cost
    as much kernel time (page faults) as the Python work on them. No-op off glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 4 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)
    except (OSError, AttributeError):
        pass


def _warm() -> int:
    import imaging.ingest.reader  # noqa: F401 (what every task of the pool will need)

    keep_freed_memory()
    return os.getpid()


def prepare_pool(workers: int, *, leave_core: bool = False) -> Executor:
    """`workers` processes (with leave_core, at most one fewer than the usable cores).

    leave_core is for the DICOM listener: it receives on one thread of this process, and each
    C-STORE waits for its response, so workers that take that core slow the whole transfer
    (on two cores, 300 instances came in at 71-77 per second with two workers, 82-116 with
    one). A pull streams its HTTP responses instead, and gains from every worker."""
    keep_freed_memory()
    if leave_core:
        workers = min(workers, usable_cpus() - 1)
    if workers < 1 or multiprocessing.current_process().daemon:
        return BatchingExecutor(ThreadPoolExecutor(1, thread_name_prefix="dicom-prepare"), workers=1)
    # spawn, not fork: the parent holds database connections and threads.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    # Start every worker now (they import pydicom and numpy), not when the first series arrives.
    wait([pool.submit(_warm) for _ in range(workers)])
    return BatchingExecutor(pool, workers=workers)


@dataclass
class _Call:
    fn: Callable[..., Any]
    args: tuple
    kwargs: dict
    future: Future = field(default_factory=Future)


def _run_batch(calls: list[tuple[Callable[..., Any], tuple, dict]]) -> list[tuple[bool, Any]]:
    """Run in a worker: each call's (ok, result or exception), so one failure stays its own."""
    out: list[tuple[bool, Any]] = []
    for fn, args, kwargs in calls:
        try:
            out.append((True, fn(*args, **kwargs)))
        except Exception as exc:
            out.append((False, exc))
    return out


class BatchingExecutor(Executor):
    """An executor over another one that hands calls over in batches of up to `max_batch`,
    keeping at most workers + 1 batches in flight (one waiting behind the busy workers, so
    none of them idles). A call's Future is its own: cancel() works until it is handed over.

    No thread of its own: a batch is handed over by the submitting thread while there is room,
    else by the callback of the batch that ends (waking a dispatcher thread per instance cost
    the receiving thread more than the batching saved)."""

    def __init__(self, inner: Executor, *, workers: int, max_batch: int = 32) -> None:
        self.inner = inner
        self.max_batch = max_batch
        self.max_in_flight = workers + 1
        self._queue: list[_Call] = []
        self._in_flight = 0
        self._stopping = False
        self._cond = threading.Condition()

    @property
    def _processes(self) -> dict | None:
        """The worker processes, where the inner pool has them (for CPU accounting)."""
        return getattr(self.inner, "_processes", None)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        call = _Call(fn, args, kwargs)
        with self._cond:
            if self._stopping:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._queue.append(call)
            batch = self._take()
        if batch:
            self._hand_over(batch)
        return call.future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cond:
            self._stopping = True
            if cancel_futures:
                for call in self._queue:
                    call.future.cancel()
                self._queue.clear()
            if wait:
                self._cond.wait_for(lambda: not self._queue and self._in_flight == 0)
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)

    def _take(self) -> list[_Call]:
        """The next batch if there is room for one (lock held); counts it in flight."""
        if not self._queue or self._in_flight >= self.max_in_flight:
            return []
        batch = self._queue[: self.max_batch]
        del self._queue[: self.max_batch]
        self._in_flight += 1
        return batch

    def _hand_over(self, batch: list[_Call]) -> None:
        calls = [c for c in batch if c.future.set_running_or_notify_cancel()]
        if not calls:  # all cancelled before they were handed over
            self._batch_over()
            return
        try:
            done = self.inner.submit(_run_batch, [(c.fn, c.args, c.kwargs) for c in calls])
        except Exception as exc:  # the inner pool is shut down or broken
            for c in calls:
                c.future.set_exception(exc)
            self._batch_over()
            return
        done.add_done_callback(partial(self._batch_done, calls))

    def _batch_done(self, calls: list[_Call], done: Future) -> None:
        try:
            if done.cancelled():
                for c in calls:
                    c.future.set_exception(RuntimeError("the prepare pool was shut down"))
                return
            exc = done.exception()
            if exc is not None:  # a worker process died (out of memory?)
                for c in calls:
                    c.future.set_exception(exc)
                return
            for c, (ok, value) in zip(calls, done.result(), strict=True):
                if ok:
                    c.future.set_result(value)
                else:
                    c.future.set_exception(value)
        finally:
            self._batch_over()

    def _batch_over(self) -> None:
        with self._cond:
            self._in_flight -= 1
            batch = self._take()
            self._cond.notify_all()
        if batch:
            self._hand_over(batch)

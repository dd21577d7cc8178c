"""The batching prepare pool: every call gets its own result, in batches, failures stay apart."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pacs.workers import BatchingExecutor, prepare_pool


def square(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x * x


class CountingPool(ThreadPoolExecutor):
    """A thread pool that records the size of every batch handed to it."""

    def __init__(self) -> None:
        super().__init__(1)
        self.batches: list[int] = []

    def submit(self, fn, /, *args, **kwargs):
        self.batches.append(len(args[0]))
        return super().submit(fn, *args, **kwargs)


def test_each_call_gets_its_own_result_and_busy_workers_make_batches():
    gate = threading.Event()
    inner = CountingPool()
    pool = BatchingExecutor(inner, workers=1, max_batch=8)
    first = pool.submit(gate.wait)  # holds the only worker
    second = pool.submit(square, 2)  # waits behind it in the inner pool: 2 in flight
    later = [pool.submit(square, n) for n in range(20)]  # no room: these queue up

    assert inner.batches == [1, 1]
    gate.set()

    assert first.result(timeout=10) is True
    assert second.result(timeout=10) == 4
    assert [f.result(timeout=10) for f in later] == [n * n for n in range(20)]
    assert sum(inner.batches) == 22
    assert max(inner.batches) == 8  # queued calls went over together, at most max_batch each
    pool.shutdown()


def test_a_failing_call_fails_alone():
    pool = BatchingExecutor(ThreadPoolExecutor(1), workers=1)
    futures = [pool.submit(square, n) for n in (3, -1, 4)]

    assert futures[0].result(timeout=10) == 9
    with pytest.raises(ValueError, match="negative: -1"):
        futures[1].result(timeout=10)
    assert futures[2].result(timeout=10) == 16
    pool.shutdown()


def test_calls_not_yet_handed_over_can_be_cancelled_and_shutdown_waits_for_the_rest():
    gate = threading.Event()
    pool = BatchingExecutor(ThreadPoolExecutor(1), workers=1)
    running = [pool.submit(gate.wait), pool.submit(time.sleep, 0)]
    queued = pool.submit(square, 5)

    assert queued.cancel()
    gate.set()
    pool.shutdown(wait=True)

    assert all(f.done() for f in running)
    assert queued.cancelled()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(square, 1)


def test_the_listener_pool_leaves_a_core_to_the_receiving_process(monkeypatch):
    monkeypatch.setattr("pacs.workers.usable_cpus", lambda: 1)

    pool = prepare_pool(4, leave_core=True)  # one core: no process can be spared

    try:
        assert isinstance(pool.inner, ThreadPoolExecutor)
        assert pool.submit(square, 7).result(timeout=10) == 49
    finally:
        pool.shutdown()

"""Fixtures of the fault tests: real child processes on the test's database, killed and restarted.

Every fault test is `django_db(transaction=True)`: what it makes is committed, so the worker,
web server or listener it starts sees it; the children are stopped before the database is
flushed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import harness


@pytest.fixture
def fault_logs(tmp_path) -> Path:
    folder = tmp_path / "fault-logs"
    folder.mkdir()
    return folder


@pytest.fixture
def children(transactional_db, fault_logs) -> Iterator[list[harness.Child]]:
    """Child processes of the test, stopped (then killed) however the test ends."""
    started: list[harness.Child] = []
    yield started
    for child in reversed(started):
        child.stop()


@pytest.fixture
def start_worker(children, fault_logs):
    def _start(hostname: str | None = None) -> harness.Child:
        child = harness.worker(fault_logs, hostname)
        children.append(child)
        return child.start()

    return _start


@contextlib.contextmanager
def app_on_fault_broker(settings, monkeypatch) -> Iterator[dict]:
    """The app publishes to the children's folder broker (under the test's data folder)."""
    from platform_core.broker import ensure_folders
    from platform_core.celery import app
    from tests.conftest import _app_broker_reset

    options = harness.broker_options(Path(settings.DATA_DIR))
    ensure_folders(options)
    before = app.conf.broker_transport_options
    monkeypatch.setenv("CELERY_BROKER_URL", "atomicfs://localhost//")
    app.conf.broker_transport_options = options
    _app_broker_reset(app)
    try:
        yield options
    finally:
        app.conf.broker_transport_options = before
        monkeypatch.setenv("CELERY_BROKER_URL", "memory://")
        _app_broker_reset(app)


@pytest.fixture
def fault_broker(settings, monkeypatch):
    """Call it (a context manager) once the test's data is made: from then on tasks go to the
    children's broker. Data made before (approvals, batches) sends its side tasks to memory."""
    return lambda: app_on_fault_broker(settings, monkeypatch)


@pytest.fixture
def storage_intact(fault_logs):
    """After the fault: verify_storage --strict, as its own process, finds nothing missing or
    damaged and no file without a row (not even a temporary one the killed process left)."""

    def _check(fault: str, outcome: str) -> str:
        done = harness.verify_storage(fault_logs)
        harness.record(fault, outcome, done)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    return _check

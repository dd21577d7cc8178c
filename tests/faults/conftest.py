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


@pytest.fixture
def storage_blobs_whole(fault_logs, settings):
    """As storage_intact, except that a label blob no revision owns may stay: a save killed
    after its blob was renamed into place and before its transaction committed leaves one. It
    must be whole (its name is the sha256 of its content), or a temporary '.tmp-' name; the
    outcome names each such orphan (verify_storage --delete-orphans removes them). The verdict
    recorded is verify_storage without --strict (orphans listed, not failing), so the CI log's
    line for this fault says exit 0 only when nothing is missing or damaged."""
    from core.storage_check import file_sha256

    def _check(fault: str, outcome: str) -> str:
        done = harness.verify_storage(fault_logs, strict=False)
        lines = done.stdout.splitlines()
        problems = [line for line in lines if line.split(" ", 1)[0] in ("MISSING", "MISMATCH", "UNREADABLE")]
        orphans = [line.split()[1].rstrip(":") for line in lines if line.startswith("ORPHAN ")]
        for rel in orphans:
            name = rel.rsplit("/", 1)[-1]
            assert rel.startswith("labels/"), done.stdout
            if not name.startswith(".tmp-"):
                assert file_sha256(Path(settings.MEDIA_ROOT) / rel) == name.removesuffix(".zst"), rel
        if orphans:
            outcome += f"; {len(orphans)} unreferenced label blob(s) left whole: {orphans}"
        harness.record(fault, outcome, done)
        assert not problems, done.stdout
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    return _check

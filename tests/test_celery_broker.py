"""The real-worker tests run on the broker CI names (make test-redis: a throwaway Redis, as
production runs), else on the embedded default's atomicfs folder broker in a temporary folder:
never on memory://, never in a developer's var/broker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import per_xdist_worker


@pytest.mark.celery_worker
def test_the_app_and_the_worker_share_the_test_broker(celery_app, celery_worker, celery_broker, settings):
    from platform_core.celery import app

    url, options = celery_broker
    with app.connection_for_write() as conn:
        published_to = conn.as_uri()
        transport_options = conn.transport_options

    assert celery_app.connection_for_write().as_uri() == published_to
    assert not published_to.startswith("memory")
    if os.environ.get("CURATECT_TEST_BROKER_URL"):
        assert url == per_xdist_worker(os.environ["CURATECT_TEST_BROKER_URL"])
    else:
        assert published_to.startswith("atomicfs://")
        queue = Path(transport_options["data_folder_out"])
        assert queue == Path(options["data_folder_out"]) and queue.is_dir()
        assert not queue.is_relative_to(settings.BASE_DIR)


@pytest.mark.celery_worker
def test_a_task_the_app_sends_by_name_reaches_the_worker(celery_app, celery_worker):
    from platform_core.celery import app

    sent = app.send_task("celery.ping", queue="ingest")

    # The worker thread stores its results in the test app's backend, not the app's django-db.
    assert celery_app.AsyncResult(sent.id).get(timeout=30) == "pong"


def test_tests_without_a_worker_still_publish_to_memory():
    from platform_core.celery import app
    from tests.conftest import WORKER_BROKER_URL

    if WORKER_BROKER_URL:
        pytest.skip(
            "a broker was given (CURATECT_TEST_BROKER_URL or CELERY_BROKER_URL): every test publishes there"
        )

    with app.connection_for_write() as conn:
        assert conn.as_uri().startswith("memory")


def test_each_xdist_worker_gets_a_redis_database_of_its_own(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert per_xdist_worker("redis://127.0.0.1:6380/0") == "redis://127.0.0.1:6380/2"
    assert per_xdist_worker("redis://:pw@127.0.0.1:6380") == "redis://:pw@127.0.0.1:6380/2"
    assert per_xdist_worker("atomicfs://localhost//") == "atomicfs://localhost//"
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert per_xdist_worker("redis://127.0.0.1:6380/0") == "redis://127.0.0.1:6380/0"

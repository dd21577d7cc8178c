"""Shared fixtures: the standard cast and small phantom scans imported through the real ingest.

Cast: an annotator, two checkers, a senior, a data manager (all of institution "demo",
members of campaign "covid19"), and an outsider of another institution.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tools.testdata import MissingTestData
from tools.testdata import lung1_file as checked_lung1_file


def per_xdist_worker(url: str) -> str:
    """A Redis broker URL made private to this pytest-xdist worker (gw0, gw1, …): database
    N + 1 + K of the server for worker gwK, so one worker's test Celery worker never takes a
    task another worker's test sent (it would run it against the wrong test database).
    Other brokers, and a run without xdist, keep the URL."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not worker.startswith("gw"):
        return url
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{base + 1 + int(worker[2:])}"))


# The broker of the real-worker tests (marker celery_worker), read before the default below:
# `make test-redis` gives a throwaway Redis (redis://127.0.0.1:PORT/N), as production runs; unset,
# they run on the embedded default's atomicfs folder broker, in a temporary folder.
# memory:// is not one: it is the default set below, which pytest-xdist's workers inherit from
# the controller's environment.
_GIVEN_BROKER_URL = os.environ.get("CURATECT_TEST_BROKER_URL") or os.environ.get("CELERY_BROKER_URL") or ""
WORKER_BROKER_URL = per_xdist_worker("" if _GIVEN_BROKER_URL.startswith("memory:") else _GIVEN_BROKER_URL)
# Tests publish Celery messages to memory, never into a developer's running broker folder.
os.environ.setdefault("CELERY_BROKER_URL", "memory://")


def lung1_file(name: str) -> Path:
    """lung1_image.nrrd or lung1_label.nrrd: the real chest CT of pyradiomics that `make testdata` keeps.

    Absent, the test fails (not skips) and says to run `make testdata`: `make test` always fetches
    it, so a missing volume is a broken set-up, not an optional peer.
    """
    try:
        return checked_lung1_file(name)
    except MissingTestData as missing:
        pytest.fail(str(missing), pytrace=False)


@dataclass
class Cast:
    institution: object
    other_institution: object
    campaign: object
    annotator: object
    annotator2: object
    checker1: object
    checker2: object
    checker3: object
    senior: object
    manager: object
    outsider: object


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # PBKDF2 costs ~0.25 s per user on this machine; the cast alone has eight.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _quick_pacs_retries(settings):
    # dicomweb-client retries a refused connection twice, waiting 1 s then 2 s: 3 s a call to a
    # closed port, which the fuzzing and the PACS error tests make hundreds of. Same attempts.
    settings.PACS_HTTP_RETRY_WAIT_MS = 5


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path_factory):
    """Each test gets its own file storage, so nothing leaks between tests or into var/."""
    root = tmp_path_factory.mktemp("media")
    settings.MEDIA_ROOT = root
    settings.DATA_DIR = root.parent / (root.name + "-data")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cast(db) -> Cast:
    from core.label_schema import COVID19_SCHEMA
    from core.models import Campaign, CampaignMember, Institution, Membership, Role, User

    inst = Institution.objects.create(slug="demo", name="Demo Hospital")
    other = Institution.objects.create(slug="elsewhere", name="Elsewhere Clinic")
    campaign = Campaign.objects.create(
        slug="covid19", name="COVID-19", institution=inst, label_schema=COVID19_SCHEMA
    )
    people = {}
    for name, role, institution in [
        ("annotator", Role.ANNOTATOR, inst),
        ("annotator2", Role.ANNOTATOR, inst),
        ("checker1", Role.CHECKER, inst),
        ("checker2", Role.CHECKER, inst),
        ("checker3", Role.CHECKER, inst),
        ("senior", Role.SENIOR, inst),
        ("manager", Role.DATA_MANAGER, inst),
        ("outsider", Role.DATA_MANAGER, other),
    ]:
        user = User.objects.create_user(username=name, password="pw-" + name)
        Membership.objects.create(user=user, institution=institution, role=role)
        if institution == inst:
            CampaignMember.objects.create(campaign=campaign, user=user, role=role)
        people[name] = user
    return Cast(institution=inst, other_institution=other, campaign=campaign, **people)


def make_series(
    tmp: Path, *, slices: int = 24, size: int = 64, seed: int = 0, patient: str = "P-1", **kw
) -> Path:
    """A phantom series folder holding only DICOM; its ground truth goes to truth_of(folder)."""
    from demo.phantom import GROUND_TRUTH_FILE, write_phantom_study

    out = tmp / f"series-{seed}-{patient}"
    folder = write_phantom_study(
        out,
        slices=slices,
        rows=size,
        cols=size,
        seed=seed,
        patient_id=patient,
        patient_name=f"DOE^{patient}",
        **kw,
    )
    truth_of(out).parent.mkdir(parents=True, exist_ok=True)
    shutil.move(folder / GROUND_TRUTH_FILE, truth_of(out))
    return out


def truth_of(series_folder: Path) -> Path:
    return series_folder.parent.parent / "truth" / f"{series_folder.name}.npz"


@pytest.fixture
def import_phantoms(cast, tmp_path):
    """import_phantoms(n, slices=, size=) → list of Scan, imported into the cast's campaign."""
    from core.models import Scan
    from imaging.ingest.service import ingest_path

    def _import(n: int = 1, *, slices: int = 24, size: int = 64, first_seed: int = 0):
        folder = tmp_path / f"phantoms-{first_seed}"
        for i in range(n):
            make_series(folder, slices=slices, size=size, seed=first_seed + i, patient=f"P-{first_seed + i}")
        report = ingest_path(folder, institution=cast.institution, campaign_id=cast.campaign.pk)
        assert not report.rejected_files and not report.rejected_series, report.as_dict()
        return list(Scan.objects.filter(pk__in=report.scans_created).order_by("pk"))

    return _import


@pytest.fixture
def api(client):
    """A DRF test client; log in with api.force_authenticate(user)."""
    from rest_framework.test import APIClient

    return APIClient()


# ----------------------------------------------------------------------------- a real Celery worker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts a real worker carries the marker even if its author forgot it, so
    `pytest -m celery_worker` (make test-redis) runs every one of them on the production broker."""
    for item in items:
        if {"celery_worker", "celery_session_worker"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.celery_worker)


@pytest.fixture(scope="session")
def celery_broker(tmp_path_factory) -> tuple[str, dict]:
    """(broker URL, transport options) that the app and the test worker share."""
    if WORKER_BROKER_URL:
        return WORKER_BROKER_URL, {}
    from platform_core.broker import ensure_folders

    folder = tmp_path_factory.mktemp("broker")
    # The layout and polling of settings' embedded broker, in a folder of the test session's own.
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
    ensure_folders(options)
    return "atomicfs://localhost//", options


@pytest.fixture(scope="session")
def celery_config(celery_broker) -> dict:
    """The app's broker, routes and queues for the worker thread (celery.contrib.pytest's test
    app knows none of them: without the queues nothing is consumed)."""
    from django.conf import settings
    from kombu import Queue

    url, options = celery_broker
    return {
        "broker_url": url,
        "broker_transport_options": options,
        "result_backend": "cache+memory://",
        "task_routes": settings.CELERY_TASK_ROUTES,
        "task_default_queue": settings.CELERY_TASK_DEFAULT_QUEUE,
        "task_queues": [Queue(name) for name in settings.CELERY_QUEUES_ALL],
        "task_acks_late": settings.CELERY_TASK_ACKS_LATE,
        "task_reject_on_worker_lost": settings.CELERY_TASK_REJECT_ON_WORKER_LOST,
        "task_track_started": settings.CELERY_TASK_TRACK_STARTED,
        "worker_prefetch_multiplier": settings.CELERY_WORKER_PREFETCH_MULTIPLIER,
    }


@pytest.fixture(scope="session")
def celery_includes() -> list[str]:
    """Every task module of the app, imported before the worker thread starts: a worker learns
    its tasks at start (production's autodiscovers them), so a task module first imported by
    the test itself would reach it as an unregistered task."""
    from platform_core.celery import app

    app.loader.import_default_modules()
    return sorted({task.__module__ for task in app.tasks.values() if not task.name.startswith("celery.")})


@pytest.fixture(scope="session")
def celery_worker_parameters() -> dict:
    from django.conf import settings

    return {"queues": list(settings.CELERY_QUEUES_ALL), "shutdown_timeout": 30.0}


def _app_broker_reset(app) -> None:
    """Drop the app's cached connection and producer pools, so the next send picks the pools of
    the broker it now names. Not closed: kombu.pools shares them with every app on that broker."""
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def app_on_worker_broker(celery_broker, monkeypatch):
    """The app publishes to the worker's broker for one test, then to memory again.

    Celery reads CELERY_BROKER_URL from the environment before its settings, for the app and the
    test worker alike; the app's connection pool was made for memory:// by earlier tests."""
    from platform_core.celery import app

    url, options = celery_broker
    before = app.conf.broker_transport_options
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    app.conf.broker_transport_options = options
    _app_broker_reset(app)
    yield url
    app.conf.broker_transport_options = before
    _app_broker_reset(app)


@pytest.fixture
def celery_worker(app_on_worker_broker, celery_worker):
    """celery.contrib.pytest's worker thread, on the broker the app publishes to."""
    yield celery_worker

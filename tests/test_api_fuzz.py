"""No 500 on any input: schemathesis fuzzes every operation of /api/schema/ (issue #12, item 3).

The schema is loaded from the app in-process and every operation is called against the WSGI app
as an annotator and as a data manager of the standard cast, who hold real data: a scan imported
through the ingest, its batch, a saved and submitted revision (so checks exist), a remote PACS.
Path parameters name those objects, so the fuzzed bodies and queries reach the code behind the
404s; a second, smaller pass generates the path parameters too. Hypothesis is derandomized and
bounded per operation, so the run is the same each time and stays within a few minutes.

Celery tasks that operations start (pre-segmentation, exports, training, pulls, sends) are
deferred with transaction.on_commit, which never fires inside a test transaction: those
operations are fuzzed too, without starting long jobs. The remote PACS points at a closed port
on loopback, so echo, search and pull fail fast (no network) until a fuzzed PATCH changes it;
operations that change or delete objects run after those that only read.

A failure prints each failing case with a curl line to reproduce it; fix the bug and keep the
case as a plain regression test in tests/test_api_errors.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

# Examples per operation, role and mode (8 keeps both database runs of CI within their time;
# the run is derandomized, so more examples only dig deeper): FUZZ_EXAMPLES=200 by hand.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
# Fewer for the pass with generated path parameters: most of it ends in a 404.
RANDOM_PATH_EXAMPLES = max(2, EXAMPLES // 4)
# Reads first, then creations, then changes and deletions (see the module docstring).
METHOD_ORDER = {"GET": 0, "HEAD": 0, "OPTIONS": 0, "POST": 1, "PUT": 2, "PATCH": 2, "DELETE": 3}


def api_schema() -> schemathesis.BaseSchema:
    from django.core.wsgi import get_wsgi_application
    from drf_spectacular.generators import SchemaGenerator

    raw = SchemaGenerator().get_schema(request=None, public=True)
    # Through JSON, as a client sees it (drf-spectacular leaves lazy strings and tuples).
    schema = schemathesis.openapi.from_dict(json.loads(json.dumps(raw, default=str)))
    schema.app = get_wsgi_application()
    return schema


@contextlib.contextmanager
def one_connection() -> Iterator[None]:
    """The WSGI handler closes 'old' connections around each request; inside the test's
    transaction that would drop it. Django's own test client disconnects the same handlers."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def world(cast, import_phantoms):
    """Real objects for the path parameters: ids by parameter name."""
    from annotation.services import revision_save
    from core.services.batches import batch_build
    from imaging.models import ImportJob
    from pacs import services as pacs_services
    from qc.models import Check
    from qc.services import revision_submit

    scan = import_phantoms(1, slices=12, size=32)[0]
    batch = batch_build(actor=cast.manager, campaign=cast.campaign, annotator=cast.annotator)
    revision = revision_save(
        actor=cast.annotator,
        campaign=cast.campaign,
        scan=scan,
        parent_id=None,
        boxes=[],
        scan_labels={"diagnosis": "COVID-19"},
    )
    revision_submit(actor=cast.annotator, campaign=cast.campaign, scan=scan, revision_id=revision.pk)
    remote = pacs_services.remote_save(
        actor=cast.manager,
        institution=cast.institution,
        data={
            "name": "closed port",
            "dicomweb_url": "http://127.0.0.1:9/dicomweb",
            "ae_title": "NOWHERE",
            "host": "127.0.0.1",
            "port": 9,
        },
    )
    job = ImportJob.objects.create(institution=cast.institution, created_by=cast.manager, source="fuzz")
    return {
        "campaign_id": cast.campaign.pk,
        "scan_id": scan.pk,
        "batch_id": batch.pk,
        "check_id": Check.objects.filter(revision=revision).order_by("pk").first().pk,
        "remote_id": remote.pk,
        "institution_id": cast.institution.pk,
        "job_id": job.pk,
        "pseudonym": scan.study.patient.pseudonym,
        "study_uid": scan.study.study_uid,
    }


def session_of(user) -> tuple[dict[str, str], dict[str, str]]:
    """Cookies and headers of a logged-in browser session, CSRF token included."""
    from django.middleware.csrf import _get_new_csrf_string
    from django.test import Client

    client = Client()
    client.force_login(user)
    csrf = _get_new_csrf_string()
    cookies = {"sessionid": client.cookies["sessionid"].value, "csrftoken": csrf}
    return cookies, {"X-CSRFToken": csrf}


def fuzz_operation(operation, *, path_parameters, cookies, headers, mode, examples) -> list[str]:
    failures: list[str] = []
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @given(case=strategy)
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    def run(case):
        case_headers = {**(case.headers or {}), **headers}
        try:
            response = case.call(headers=case_headers, cookies=cookies)
            case.validate_response(response, checks=[not_a_server_error], headers=case_headers)
        except Exception as exc:  # a FailureGroup, or the app raised: record it and go on
            if len(failures) < 3:
                failures.append(f"{operation.label} [{mode.value}]: {exc!r:.300} {str(exc).strip()[:1500]}")

    # Unsatisfiable: nothing to generate in this mode (e.g. no negative case of an operation
    # whose only inputs are the fixed path parameters).
    with contextlib.suppress(Unsatisfiable):
        run()
    return failures


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["annotator", "manager"])
def test_no_operation_answers_a_server_error(cast, world, role):
    schema = api_schema()
    cookies, headers = session_of(getattr(cast, role))
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: (METHOD_ORDER.get(op.method.upper(), 1), op.path))
    assert len(operations) > 40, [op.label for op in operations]
    if os.environ.get("FUZZ_ONLY"):  # e.g. FUZZ_ONLY="POST /api/pacs/remotes/" to dig into one
        operations = [op for op in operations if os.environ["FUZZ_ONLY"] in op.label]

    failures: list[str] = []
    timings: list[tuple[float, str]] = []
    with one_connection():
        for operation in operations:
            started = time.perf_counter()
            names = {p.name for p in operation.path_parameters}
            fixed = {name: world[name] for name in names if name in world}
            # Negative cases need an input to break besides the fixed path: without one,
            # Hypothesis only rejects draws until it gives up.
            inputs = len(operation.query) + len(operation.headers) + len(list(operation.body))
            modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE][: 2 if inputs else 1]
            for mode in modes:
                failures += fuzz_operation(
                    operation,
                    path_parameters=fixed,
                    cookies=cookies,
                    headers=headers,
                    mode=mode,
                    examples=EXAMPLES,
                )
            if fixed:
                failures += fuzz_operation(
                    operation,
                    path_parameters={},
                    cookies=cookies,
                    headers=headers,
                    mode=GenerationMode.NEGATIVE,
                    examples=RANDOM_PATH_EXAMPLES,
                )
            timings.append((time.perf_counter() - started, operation.label))

    if os.environ.get("FUZZ_TIMINGS"):
        for seconds, label in sorted(timings, reverse=True):
            print(f"{seconds:6.2f} s  {label}")
    assert not failures, "\n\n".join(failures)


def test_the_schema_validates_without_warnings(tmp_path):
    """Every view declares its request and response bodies, one operationId each (issue #13 §3):
    drf-spectacular's warnings are exactly the views the fuzzing above could not see into."""
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))

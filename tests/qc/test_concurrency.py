"""Races on PostgreSQL: verdicts at the same instant, a double-clicked submit, the last two
scans of a batch checked together. Each thread has its own database connection.

On SQLite these are skipped: IMMEDIATE transactions serialise every writer there, so the
races cannot happen, and real row locks (select_for_update) are what is under test."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections

from annotation.models import Annotation, AnnotationState
from core.api_errors import Conflict
from core.models import AuditEvent
from qc.models import BatchReview, Check, SpotCheckDraw
from qc.services import check_record, revision_submit
from tests.qc.conftest import finding, head_id, make_batch, make_scans, open_checks, save, submit

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL row locks; SQLite serialises all writers, so these races cannot "
            "happen there (make test-pg runs them)"
        )


def at_once(*calls):
    """Run the calls in threads released together; return (results, errors) in call order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list = [None] * len(calls)

    def run(i, fn):
        try:
            barrier.wait(timeout=10)
            results[i] = fn()
        except Exception as exc:
            errors[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results, errors


@pytest.mark.parametrize("second", ["pass", "fail"])
def test_two_verdicts_at_the_same_instant_make_exactly_one_transition(cast, second):
    scans = make_scans(cast.campaign, 6)
    make_batch(cast.campaign, cast.manager, cast.annotator, [*scans, *make_scans(cast.campaign, 1)])
    for scan in scans:
        save(cast.annotator, cast.campaign, scan)
        submit(cast.annotator, cast.campaign, scan)
    for scan in scans:  # several tries, to give the race a real chance
        a, b = open_checks(cast.campaign, scan)
        findings = [finding()] if second == "fail" else []
        _, errors = at_once(
            lambda a=a: check_record(actor=a.checker, check=a, verdict="pass"),
            lambda b=b, f=findings: check_record(actor=b.checker, check=b, verdict=second, findings=f),
        )
        assert errors == [None, None]
        assert {c.verdict for c in Check.objects.filter(annotation__scan=scan)} == {"pass", second}
        expected = AnnotationState.CHECKED if second == "pass" else AnnotationState.NEEDS_REVISION
        assert Annotation.objects.get(scan=scan).state == expected
        moves = AuditEvent.objects.filter(action="annotation_state", scan=scan, from_state="submitted")
        assert list(moves.values_list("to_state", flat=True)) == [expected]
    connections.close_all()


def test_a_double_clicked_submit_succeeds_once(cast):
    scans = make_scans(cast.campaign, 5)
    make_batch(cast.campaign, cast.manager, cast.annotator, scans)
    for scan in scans:
        save(cast.annotator, cast.campaign, scan)
        head = head_id(cast.campaign, scan)

        def click(scan=scan, head=head):
            return revision_submit(actor=cast.annotator, campaign=cast.campaign, scan=scan, revision_id=head)

        results, errors = at_once(click, click)
        assert sum(r is not None for r in results) == 1
        (error,) = [e for e in errors if e is not None]
        assert isinstance(error, Conflict) and error.status_code == 409 and error.code == "already_submitted"
        assert Check.objects.filter(annotation__scan=scan).count() == 2
        assert (
            AuditEvent.objects.filter(action="annotation_state", scan=scan, to_state="submitted").count() == 1
        )
    connections.close_all()


def test_the_last_two_scans_checked_together_start_one_spot_check(cast, monkeypatch):
    from qc.services import reviews

    original = reviews.batch_scan_ids

    def slow_batch_scan_ids(batch):  # widen the window between "my scan is checked" and "are all?"
        time.sleep(0.2)
        return original(batch)

    monkeypatch.setattr(reviews, "batch_scan_ids", slow_batch_scan_ids)
    for _ in range(3):
        scans = make_scans(cast.campaign, 2)
        batch = make_batch(cast.campaign, cast.manager, cast.annotator, scans)
        for scan in scans:
            save(cast.annotator, cast.campaign, scan)
            submit(cast.annotator, cast.campaign, scan)
            check_record(
                actor=open_checks(cast.campaign, scan)[0].checker,
                check=open_checks(cast.campaign, scan)[0],
                verdict="pass",
            )
        last = [open_checks(cast.campaign, scan)[1] for scan in scans]
        _, errors = at_once(
            *[lambda c=c: check_record(actor=c.checker, check=c, verdict="pass") for c in last]
        )
        assert errors == [None, None]
        # without the batch-review lock, each would see the other scan unchecked and no draw would happen
        assert BatchReview.objects.get(batch=batch).state == "spot_check"
        assert SpotCheckDraw.objects.filter(review__batch=batch).count() == 1
    connections.close_all()

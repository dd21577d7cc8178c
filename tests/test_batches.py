"""Batches: building, assignment rules, the one-open-batch rule in the database, the race."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, connection, transaction

from core.api_errors import Conflict, DomainError, Forbidden
from core.models import AuditEvent, Batch, BatchItem
from core.services.batches import batch_assign, batch_build, batch_close


def test_build_takes_up_to_the_batch_size_and_assigns(cast, import_phantoms):
    scans = import_phantoms(3, slices=4, size=32)
    cast.campaign.batch_size = 2
    cast.campaign.save()

    batch = batch_build(actor=cast.manager, campaign=cast.campaign, annotator=cast.annotator)

    assert list(batch.items.values_list("scan_id", flat=True)) == [scans[0].pk, scans[1].pk]
    assert batch.annotator == cast.annotator
    assert AuditEvent.objects.filter(action="batch_assign", to_state="annotator").exists()
    rest = batch_build(actor=cast.manager, campaign=cast.campaign)
    assert list(rest.items.values_list("scan_id", flat=True)) == [scans[2].pk]
    with pytest.raises(DomainError, match="no unbatched scans"):
        batch_build(actor=cast.manager, campaign=cast.campaign)


def test_auto_assign_picks_the_least_loaded_annotator(cast, import_phantoms):
    import_phantoms(3, slices=4, size=32)
    first = batch_build(actor=cast.manager, campaign=cast.campaign, size=2, auto_assign=True)
    second = batch_build(actor=cast.manager, campaign=cast.campaign, size=1, auto_assign=True)
    assert {first.annotator, second.annotator} == {cast.annotator, cast.annotator2}


def test_only_data_managers_build_and_only_annotators_receive(cast, import_phantoms):
    import_phantoms(1, slices=4, size=32)
    with pytest.raises(Forbidden):
        batch_build(actor=cast.annotator, campaign=cast.campaign)
    with pytest.raises(DomainError, match="not an annotator"):
        batch_build(actor=cast.manager, campaign=cast.campaign, annotator=cast.checker1)
    assert Batch.objects.count() == 0  # the failed assignment rolled the batch back too


def test_named_scans_already_batched_are_refused(cast, import_phantoms):
    scans = import_phantoms(2, slices=4, size=32)
    batch_build(actor=cast.manager, campaign=cast.campaign, scan_ids=[scans[0].pk])
    with pytest.raises(Conflict, match="already in an open batch"):
        batch_build(actor=cast.manager, campaign=cast.campaign, scan_ids=[scans[0].pk, scans[1].pk])


def test_database_forbids_a_scan_in_two_open_batches(cast, import_phantoms):
    scan = import_phantoms(1, slices=4, size=32)[0]
    batch = batch_build(actor=cast.manager, campaign=cast.campaign)
    other = Batch.objects.create(campaign=cast.campaign, name="x", created_by=cast.manager)
    with pytest.raises(IntegrityError), transaction.atomic():
        BatchItem.objects.create(batch=other, scan=scan, campaign=cast.campaign, position=0)
    batch_close(actor=cast.manager, batch=batch)
    again = batch_build(actor=cast.manager, campaign=cast.campaign)  # closed batches free their scans
    assert list(again.items.values_list("scan_id", flat=True)) == [scan.pk]


def test_reassign_and_close(cast, import_phantoms):
    import_phantoms(1, slices=4, size=32)
    batch = batch_build(actor=cast.manager, campaign=cast.campaign, annotator=cast.annotator)
    batch_assign(actor=cast.manager, batch=batch, annotator=cast.annotator2)
    batch.refresh_from_db()
    assert batch.annotator == cast.annotator2
    batch_close(actor=cast.manager, batch=batch)
    with pytest.raises(Conflict, match="closed"):
        batch_assign(actor=cast.manager, batch=batch, annotator=cast.annotator)


def test_batch_api_answers_404_to_other_institutions(cast, api, import_phantoms):
    import_phantoms(1, slices=4, size=32)
    api.force_authenticate(cast.outsider)
    assert api.post(f"/api/campaigns/{cast.campaign.pk}/batches/", {}, format="json").status_code == 404
    api.force_authenticate(cast.manager)
    response = api.post(
        f"/api/campaigns/{cast.campaign.pk}/batches/", {"annotator_id": cast.annotator.pk}, format="json"
    )
    assert response.status_code == 201, response.content
    api.force_authenticate(cast.annotator)
    worklist = api.get("/api/worklist/").json()
    assert worklist[0]["progress"] == {
        "total": 1,
        "not_started": 1,
        "in_progress": 0,
        "needs_revision": 0,
        "submitted": 0,
        "done": 0,
    }


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_build_and_assign_never_double_assigns(cast, import_phantoms):
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL row locks; SQLite serialises all writers, so there is no race to test "
            "(make test-pg runs it)"
        )
    import_phantoms(12, slices=8, size=32)
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def build(annotator):
        from django.db import connection as conn

        try:
            barrier.wait()
            batch_build(actor=cast.manager, campaign=cast.campaign, size=4, annotator=annotator)
            outcomes.append("built")
        except (Conflict, DomainError) as exc:
            outcomes.append(type(exc).__name__)
        finally:
            conn.close()

    threads = [threading.Thread(target=build, args=(a,)) for a in [cast.annotator, cast.annotator2] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    scan_ids = list(BatchItem.objects.filter(is_open=True).values_list("scan_id", flat=True))
    assert len(scan_ids) == len(set(scan_ids)) == 12
    # Losers get a clean refusal (nothing left, or a 409 on collision), never a partial batch.
    assert Batch.objects.count() == outcomes.count("built") >= 3
    assert set(outcomes) <= {"built", "Conflict", "DomainError"}

"""Access that outlives the work (issue #12 item 4): an annotator works on a scan only while it
is in an open batch of theirs; afterwards they read their own revisions, read-only, and
nothing else of the scan (404), whoever holds it next. The QC loop keeps the batch open, so
revising after a checker's fail still works."""

from __future__ import annotations

import base64
import gzip

import numpy as np
import pytest

from annotation import label_codec
from core.models import Campaign, CampaignMember, CampaignScan, Role
from core.services.batches import batch_assign, batch_build
from qc.models import Check
from qc.services import check_record

FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
LABELS = {"diagnosis": "COVID-19"}


def gz(arr: np.ndarray) -> str:
    return base64.b64encode(gzip.compress(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())).decode()


def url(campaign, scan, tail: str) -> str:
    return f"/api/campaigns/{campaign.pk}/scans/{scan.pk}/{tail}"


def save(api, campaign, scan, value: int, parent_etag: str | None):
    """Save a whole volume whose lesion voxels are `value`, on top of the parent ETag."""
    volume = np.zeros(scan.shape, np.uint8)
    volume[2:5, 8:16, 8:16] = value
    body = {"full": {"encoding": "gzip", "data": gz(volume)}, "scan_labels": LABELS}
    if parent_etag is None:
        body["parent_id"] = None
    headers = {"HTTP_IF_MATCH": parent_etag} if parent_etag else {}
    return api.post(url(campaign, scan, "annotation/revisions/"), body, format="json", **headers)


def frame_url(scan) -> str:
    sop = scan.instances.order_by("index").first().sop_uid
    return f"/dicomweb/studies/{scan.study.study_uid}/series/{scan.series_uid}/instances/{sop}/frames/1"


def work_answers(api, client, campaign, scan) -> dict[str, int]:
    """Status of every way into the scan's later work: head, labels, saves, brush, pixels."""
    return {
        "scan": api.get(f"/api/scans/{scan.pk}/").status_code,
        "annotation": api.get(url(campaign, scan, "annotation/")).status_code,
        "head labels": api.get(url(campaign, scan, "annotation/labels/")).status_code,
        "save": save(api, campaign, scan, 1, None).status_code,
        "submit": api.post(url(campaign, scan, "annotation/submit/"), {"revision_id": 1}).status_code,
        "region grow": api.post(
            url(campaign, scan, "region-grow/"), {"seed": [3, 12, 12], "tolerance": 100}, format="json"
        ).status_code,
        "findings": api.get(url(campaign, scan, "findings/")).status_code,
        "report": api.get(url(campaign, scan, "report/")).status_code,
        "frame": client.get(frame_url(scan), HTTP_ACCEPT=FRAME_ACCEPT).status_code,
        "metadata": client.get(
            f"/dicomweb/studies/{scan.study.study_uid}/series/{scan.series_uid}/metadata"
        ).status_code,
    }


@pytest.fixture
def worked(cast, api, client, import_phantoms):
    """A phantom scan in the annotator's batch, with two revisions the annotator saved."""
    # A seed of its own: the DICOM JSON cache is keyed by scan id and volume checksum, and SQLite
    # reuses ids after a rollback, so test_dicomweb's seed-0 phantom must not share a checksum.
    scan = import_phantoms(1, slices=12, size=32, first_seed=7)[0]
    batch = batch_build(actor=cast.manager, campaign=cast.campaign, annotator=cast.annotator)
    api.force_authenticate(cast.annotator)
    client.force_login(cast.annotator)
    r1 = save(api, cast.campaign, scan, 1, None)
    r2 = save(api, cast.campaign, scan, 2, r1["ETag"])
    assert r1.status_code == r2.status_code == 201, (r1.content, r2.content)
    return scan, batch, [r1.json()["id"], r2.json()["id"]]


def close(api, cast, batch) -> None:
    api.force_authenticate(cast.manager)
    assert api.post(f"/api/batches/{batch.pk}/close/").status_code == 200
    api.force_authenticate(cast.annotator)


def own_revision_labels(api, campaign, scan, revision_id: int) -> np.ndarray:
    r = api.get(url(campaign, scan, f"annotation/labels/?revision={revision_id}"))
    assert r.status_code == 200, r.content
    return label_codec.decode_volume(r.content, [int(n) for n in r["X-Label-Shape"].split(",")])


def test_while_the_batch_is_open_the_annotator_reaches_all_of_the_scan(cast, api, client, worked):
    scan, _batch, (r1, r2) = worked

    answers = work_answers(api, client, cast.campaign, scan)

    assert answers["scan"] == answers["annotation"] == answers["head labels"] == 200
    assert answers["region grow"] == answers["frame"] == answers["metadata"] == answers["findings"] == 200
    listed = api.get(url(cast.campaign, scan, "annotation/revisions/"))
    assert [r["id"] for r in listed.json()] == [r1, r2]


def test_after_close_the_annotator_reads_own_revisions_and_nothing_else(cast, api, client, worked):
    scan, batch, (r1, r2) = worked

    close(api, cast, batch)

    listed = api.get(url(cast.campaign, scan, "annotation/revisions/"))
    assert listed.status_code == 200
    assert [(r["id"], r["author"]) for r in listed.json()] == [(r1, "annotator"), (r2, "annotator")]
    assert (own_revision_labels(api, cast.campaign, scan, r1) == 1).sum() == 3 * 8 * 8
    assert (own_revision_labels(api, cast.campaign, scan, r2) == 2).sum() == 3 * 8 * 8
    answers = work_answers(api, client, cast.campaign, scan)
    assert answers == {name: 404 for name in answers}, answers
    assert api.get("/api/worklist/").json() == []
    # Read-only: nothing was saved by the refused attempts.
    api.force_authenticate(cast.manager)
    assert api.get(url(cast.campaign, scan, "annotation/")).json()["head"]["id"] == r2


def test_rebatched_to_another_annotator_the_former_one_loses_the_later_work(cast, api, client, worked):
    scan, batch, (r1, r2) = worked
    close(api, cast, batch)
    batch_build(actor=cast.manager, campaign=cast.campaign, scan_ids=[scan.pk], annotator=cast.annotator2)
    api.force_authenticate(cast.annotator2)
    r3 = save(api, cast.campaign, scan, 3, f'"rev-{r2}"')
    assert r3.status_code == 201, r3.content
    r3_id = r3.json()["id"]
    listed = api.get(url(cast.campaign, scan, "annotation/revisions/")).json()
    assert [r["id"] for r in listed] == [r1, r2, r3_id]  # the new annotator sees the whole history

    api.force_authenticate(cast.annotator)
    client.force_login(cast.annotator)

    # Another annotator's open batch holding the scan gives the former one nothing back.
    assert [r["id"] for r in api.get(url(cast.campaign, scan, "annotation/revisions/")).json()] == [r1, r2]
    assert api.get(url(cast.campaign, scan, f"annotation/labels/?revision={r3_id}")).status_code == 404
    answers = work_answers(api, client, cast.campaign, scan)
    assert answers == {name: 404 for name in answers}, answers
    api.force_authenticate(cast.annotator2)
    assert api.get(url(cast.campaign, scan, "annotation/")).json()["head"]["id"] == r3_id


def test_a_batch_reassigned_while_open_leaves_the_former_annotator_own_revisions(cast, api, client, worked):
    scan, batch, (r1, r2) = worked

    batch_assign(actor=cast.manager, batch=batch, annotator=cast.annotator2)

    assert [r["id"] for r in api.get(url(cast.campaign, scan, "annotation/revisions/")).json()] == [r1, r2]
    answers = work_answers(api, client, cast.campaign, scan)
    assert answers == {name: 404 for name in answers}, answers


def test_strangers_get_404_even_for_the_revision_list(cast, api, worked):
    scan, batch, (r1, _r2) = worked
    close(api, cast, batch)
    for who in (cast.annotator2, cast.outsider):
        api.force_authenticate(who)
        assert api.get(url(cast.campaign, scan, "annotation/revisions/")).status_code == 404
        assert api.get(url(cast.campaign, scan, f"annotation/labels/?revision={r1}")).status_code == 404


def test_access_counts_per_campaign(cast, api, client, worked):
    """An open batch of another campaign holding the same scan reopens nothing of this one."""
    scan, batch, (r1, r2) = worked
    close(api, cast, batch)
    other = Campaign.objects.create(
        slug="second", name="Second", institution=cast.institution, label_schema=cast.campaign.label_schema
    )
    CampaignScan.objects.create(campaign=other, scan=scan)
    CampaignMember.objects.create(campaign=other, user=cast.annotator, role=Role.ANNOTATOR)
    batch_build(actor=cast.manager, campaign=other, scan_ids=[scan.pk], annotator=cast.annotator)

    assert api.get(url(other, scan, "annotation/")).status_code == 200
    assert api.get(url(cast.campaign, scan, "annotation/")).status_code == 404
    assert save(api, cast.campaign, scan, 1, f'"rev-{r2}"').status_code == 404
    assert [r["id"] for r in api.get(url(cast.campaign, scan, "annotation/revisions/")).json()] == [r1, r2]


def test_qc_keeps_the_batch_open_so_the_annotator_revises_after_a_fail(cast, api, client, worked):
    scan, _batch, (_r1, r2) = worked
    submitted = api.post(url(cast.campaign, scan, "annotation/submit/"), {}, HTTP_IF_MATCH=f'"rev-{r2}"')
    assert submitted.status_code == 200, submitted.content
    finding = {"slice": 3, "position": [10, 12], "kind": "boundary", "text": "edge too tight"}
    for check in Check.objects.filter(annotation__scan=scan):
        check_record(actor=check.checker, check=check, verdict="fail", findings=[finding])

    assert api.get(url(cast.campaign, scan, "findings/")).json()["source"] == "checks"
    assert client.get(frame_url(scan), HTTP_ACCEPT=FRAME_ACCEPT).status_code == 200
    revised = save(api, cast.campaign, scan, 1, f'"rev-{r2}"')
    assert revised.status_code == 201, revised.content
    resubmitted = api.post(url(cast.campaign, scan, "annotation/submit/"), {}, HTTP_IF_MATCH=revised["ETag"])
    assert resubmitted.status_code == 200 and resubmitted.json()["round"] == 2

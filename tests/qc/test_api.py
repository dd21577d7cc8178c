"""The QC API: scoping (404 outside), roles (403 with a reason), blindness, anonymity, CSV."""

from __future__ import annotations

import csv
import io

import pytest

from annotation.models import Annotation
from qc.models import Check, SpotCheck
from tests.qc.conftest import finding, make_batch, open_checks, save


@pytest.fixture
def world(cast, scans_of):
    scans = scans_of(2)
    batch = make_batch(cast.campaign, cast.manager, cast.annotator, scans)
    for scan in scans:
        save(cast.annotator, cast.campaign, scan)
    return batch, scans


def as_user(api, user):
    api.force_authenticate(user)
    return api


def url(cast, scan, tail):
    return f"/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/{tail}"


def submit_api(api, cast, scan, user=None):
    head = Annotation.objects.get(scan=scan).head_id
    return as_user(api, user or cast.annotator).post(
        url(cast, scan, "annotation/submit/"), {}, format="json", HTTP_IF_MATCH=f'"rev-{head}"'
    )


def verdict_api(api, check, verdict, user=None, findings=None):
    body = {
        "verdict": verdict,
        "findings": findings if findings is not None else ([finding()] if verdict == "fail" else []),
        "time_spent_s": 12.5,
    }
    return as_user(api, user or check.checker).post(
        f"/api/qc/checks/{check.pk}/verdict/", body, format="json"
    )


def test_submit_via_if_match_and_double_submit(api, cast, world):
    _, (scan, _) = world
    r = submit_api(api, cast, scan)
    assert r.status_code == 200, r.json()
    assert r.json()["state"] == "submitted" and r.json()["round"] == 1
    assert "checker" not in r.content.decode()  # no identities for the annotator
    again = submit_api(api, cast, scan)
    assert again.status_code == 409 and again.json()["code"] == "already_submitted"


def test_submit_needs_a_revision_and_the_right_person(api, cast, world):
    _, (scan, other) = world
    r = as_user(api, cast.annotator).post(url(cast, scan, "annotation/submit/"), {}, format="json")
    assert r.status_code == 428
    r = as_user(api, cast.annotator).post(
        url(cast, scan, "annotation/submit/"), {"revision_id": 99999}, format="json"
    )
    assert r.status_code == 409 and r.json()["code"] == "stale_parent" and r.json()["head"]["id"]
    assert submit_api(api, cast, scan, user=cast.manager).status_code == 403
    assert submit_api(api, cast, scan, user=cast.outsider).status_code == 404
    head = Annotation.objects.get(scan=other).head_id
    r = as_user(api, cast.annotator).post(
        url(cast, other, "annotation/submit/"), {"revision_id": head}, format="json"
    )
    assert r.status_code == 200


def test_checkers_are_blind_through_the_api(api, cast, world):
    _, (scan, _) = world
    submit_api(api, cast, scan)
    a, b = open_checks(cast.campaign, scan)
    queue = as_user(api, a.checker).get("/api/qc/checks/").json()
    assert [c["id"] for c in queue] == [a.pk]
    assert verdict_api(api, a, "fail", findings=[finding("missed_lesion")]).status_code == 200
    # b sees its own check without a's verdict, and cannot open a's check at all
    mine = as_user(api, b.checker).get(f"/api/qc/checks/{b.pk}/").json()
    assert mine["other"] is None and mine["verdict"] == "pending"
    assert as_user(api, b.checker).get(f"/api/qc/checks/{a.pk}/").status_code == 404
    assert "missed_lesion" not in as_user(api, b.checker).get("/api/qc/checks/").content.decode()
    # both in: now each sees the other
    r = verdict_api(api, b, "pass")
    assert r.status_code == 200 and r.json()["other"]["verdict"] == "fail"
    assert as_user(api, b.checker).get(f"/api/qc/checks/{a.pk}/").status_code == 200


def test_verdict_roles_and_scope(api, cast, world):
    _, (scan, _) = world
    submit_api(api, cast, scan)
    a, b = open_checks(cast.campaign, scan)
    r = verdict_api(api, a, "pass", user=cast.manager)  # sees the check, may not decide it
    assert r.status_code == 403 and r.json()["code"] == "not_your_check"
    assert verdict_api(api, a, "pass", user=cast.annotator).status_code == 404
    assert verdict_api(api, a, "pass", user=cast.outsider).status_code == 404
    assert verdict_api(api, a, "pass", user=b.checker).status_code == 404  # blind: not even visible
    r = verdict_api(api, a, "fail", findings=[])
    assert r.status_code == 400 and r.json()["code"] == "findings_required"
    r = verdict_api(api, a, "maybe")
    assert r.status_code == 400


def test_reassign_is_for_data_managers(api, cast, world):
    _, (scan, _) = world
    submit_api(api, cast, scan)
    a, b = open_checks(cast.campaign, scan)
    spare = ({cast.checker1, cast.checker2, cast.checker3} - {a.checker, b.checker}).pop()
    r = as_user(api, a.checker).post(
        f"/api/qc/checks/{a.pk}/reassign/", {"checker_id": spare.pk}, format="json"
    )
    assert r.status_code == 403
    r = as_user(api, cast.manager).post(
        f"/api/qc/checks/{a.pk}/reassign/", {"checker_id": spare.pk}, format="json"
    )
    assert r.status_code == 200 and Check.objects.get(pk=a.pk).checker == spare
    r = as_user(api, cast.manager).post(
        f"/api/qc/checks/{a.pk}/reassign/", {"checker_id": cast.annotator.pk}, format="json"
    )
    assert r.status_code == 400


def test_annotator_sees_findings_but_never_checker_identities(api, cast, world):
    _, (scan, _) = world
    submit_api(api, cast, scan)
    a, b = open_checks(cast.campaign, scan)
    verdict_api(api, a, "fail", findings=[finding("boundary", text="tighten the margin")])
    verdict_api(api, b, "fail", findings=[finding("wrong_class", text="consolidation")])
    r = as_user(api, cast.annotator).get(url(cast, scan, "findings/"))
    assert r.status_code == 200
    body = r.json()
    assert [rv["reviewer"] for rv in body["reviews"]] == ["checker A", "checker B"]
    text = r.content.decode()
    for person in (cast.checker1, cast.checker2, cast.checker3):
        assert person.username not in text and f'"id": {person.pk}' not in text
    assert as_user(api, a.checker).get(url(cast, scan, "findings/")).status_code == 403
    assert as_user(api, cast.outsider).get(url(cast, scan, "findings/")).status_code == 404
    # the annotation head the annotator reads names no checker either
    assert "checker" not in as_user(api, cast.annotator).get(url(cast, scan, "annotation/")).content.decode()


def test_a_checker_can_read_the_labels_it_checks_and_nothing_else(api, cast, world):
    _, (scan, other) = world
    submit_api(api, cast, scan)
    a, _ = open_checks(cast.campaign, scan)
    r = as_user(api, a.checker).get(url(cast, scan, f"annotation/labels/?revision={a.revision_id}"))
    assert r.status_code == 200 and r["X-Label-Shape"] == "8,32,32"
    assert as_user(api, a.checker).get(f"/api/scans/{scan.pk}/").status_code == 200
    assert as_user(api, a.checker).get(url(cast, other, "annotation/labels/")).status_code == 404


def test_spot_check_flow_board_reopen_and_metrics(api, cast, world):
    batch, scans = world
    for scan in scans:
        submit_api(api, cast, scan)
        for check in open_checks(cast.campaign, scan):
            assert verdict_api(api, check, "pass").status_code == 200
    queue = as_user(api, cast.senior).get("/api/qc/spot-checks/").json()
    assert len(queue) == 1 and queue[0]["check_rounds"][0]["checks"][0]["verdict"] == "pass"
    sc = SpotCheck.objects.get(pk=queue[0]["id"])
    # the senior may open the sampled scan (viewer, WADO-RS), and only that one
    unsampled = next(s for s in scans if s.pk != sc.annotation.scan_id)
    assert as_user(api, cast.senior).get(f"/api/scans/{sc.annotation.scan_id}/").status_code == 200
    assert as_user(api, cast.senior).get(f"/api/scans/{unsampled.pk}/").status_code == 404
    assert (
        as_user(api, cast.checker1)
        .post(f"/api/qc/spot-checks/{sc.pk}/verdict/", {"verdict": "pass"}, format="json")
        .status_code
        == 404
    )
    assert (
        as_user(api, cast.manager)
        .post(f"/api/qc/spot-checks/{sc.pk}/verdict/", {"verdict": "pass"}, format="json")
        .status_code
        == 403
    )
    r = as_user(api, cast.senior).post(
        f"/api/qc/spot-checks/{sc.pk}/verdict/", {"verdict": "pass", "time_spent_s": 30}, format="json"
    )
    assert r.status_code == 200 and r.json()["verdict"] == "pass"

    board = as_user(api, cast.manager).get(f"/api/batches/{batch.pk}/board/")
    assert board.status_code == 200 and board.json()["review"]["state"] == "approved"
    assert {i["state"] for i in board.json()["items"]} == {"curated"}
    assert as_user(api, cast.annotator).get(f"/api/batches/{batch.pk}/board/").status_code == 403
    assert as_user(api, cast.checker1).get(f"/api/batches/{batch.pk}/board/").status_code == 404
    assert as_user(api, cast.outsider).get(f"/api/batches/{batch.pk}/board/").status_code == 404

    metrics = as_user(api, cast.manager).get(f"/api/qc/metrics/?campaign={cast.campaign.pk}&batch={batch.pk}")
    assert metrics.status_code == 200 and metrics.json()["overall"]["first_pass"]["rate"] == 1.0
    assert as_user(api, cast.senior).get(f"/api/qc/metrics/?campaign={cast.campaign.pk}").status_code == 200
    assert (
        as_user(api, cast.annotator).get(f"/api/qc/metrics/?campaign={cast.campaign.pk}").status_code == 403
    )
    assert as_user(api, cast.outsider).get(f"/api/qc/metrics/?campaign={cast.campaign.pk}").status_code == 404
    assert as_user(api, cast.manager).get("/api/qc/metrics/").status_code == 400

    r = as_user(api, cast.manager).post(f"/api/batches/{batch.pk}/reopen/", {"reason": ""}, format="json")
    assert r.status_code == 400 and r.json()["code"] == "reason_required"
    assert (
        as_user(api, cast.annotator)
        .post(f"/api/batches/{batch.pk}/reopen/", {"reason": "x"}, format="json")
        .status_code
        == 403
    )
    r = as_user(api, cast.manager).post(
        f"/api/batches/{batch.pk}/reopen/",
        {"reason": "label audit", "scan_ids": [scans[0].pk]},
        format="json",
    )
    assert r.status_code == 200 and r.json()["review"]["state"] == "spot_check"
    assert (
        scans[0].pk
        in r.json()["review"]["draw"]["added_scan_ids"] + r.json()["review"]["draw"]["sampled_scan_ids"]
    )


def test_audit_trail_as_csv(api, cast, world):
    _, (scan, _) = world
    submit_api(api, cast, scan)
    a, b = open_checks(cast.campaign, scan)
    verdict_api(api, a, "pass")
    verdict_api(api, b, "fail")
    r = as_user(api, cast.manager).get(url(cast, scan, "audit.csv"))
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode())))
    assert list(rows[0]) == [
        "time",
        "actor",
        "action",
        "object_type",
        "object_id",
        "from_state",
        "to_state",
        "revision_id",
        "details",
        "findings",
    ]
    moves = [(row["from_state"], row["to_state"]) for row in rows if row["action"] == "annotation_state"]
    assert moves == [
        ("not_started", "in_progress"),
        ("in_progress", "submitted"),
        ("submitted", "needs_revision"),
    ]
    assert {row["actor"] for row in rows if row["action"] == "check_record"} == {
        a.checker.username,
        b.checker.username,
    }
    assert as_user(api, cast.annotator).get(url(cast, scan, "audit.csv")).status_code == 403
    assert as_user(api, a.checker).get(url(cast, scan, "audit.csv")).status_code == 403
    assert as_user(api, cast.outsider).get(url(cast, scan, "audit.csv")).status_code == 404

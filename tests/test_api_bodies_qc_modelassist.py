"""The QC and model-assist answers are what /api/schema/ says they are (issue #13 §3).

The views build their bodies as plain dicts and the serializers of qc/serializers.py and
modelassist/serializers.py only describe them, so nothing but this test notices when the two
drift apart: every operation of the two APIs is called on real data (an approved batch, a
dataset export, a tiny training run, a failed check with findings) through the WSGI app and
its answer is checked against the operation's response schema (status code and body; a
field missing, extra-typed or wrongly null fails).
"""

from __future__ import annotations

import numpy as np
import pytest
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.modelassist.curated import approve, import_scans, label_volume, run_export
from tests.test_api_fuzz import one_connection, session_of

TINY = {"epochs": 1, "slices_per_case": 2, "batch_size": 2, "patience": 1, "max_minutes": 1}


@pytest.fixture
def world(cast, tmp_path, settings):
    """An approved batch, its export and a finished training run; a second scan whose check
    failed with a finding; a third submitted and unchecked (an open round)."""
    from annotation.services import revision_save
    from core.services.batches import batch_build
    from modelassist.services import training
    from qc.models import Check, SpotCheck, Verdict
    from qc.services import check_record, revision_submit

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CURATECT_MIN_TEST_CASES = 1
    cases = []
    for slug, n, seed in [("alpha", 2, 0), ("bravo", 1, 10), ("charlie", 1, 20)]:
        cases += [
            (s, label_volume(t, s.shape)) for s, t in import_scans(cast, tmp_path, slug, n, first_seed=seed)
        ]
    approved = approve(cast, cases)
    export = run_export(cast)
    run = training.training_request(
        actor=cast.manager, campaign=cast.campaign, export=export, architecture="unet2d-tiny", params=TINY
    )
    run = training.training_run_execute(run.pk)
    assert run.status == "done", run.error

    (failed, _), (open_, _) = import_scans(cast, tmp_path, "alpha", 2, first_seed=40)
    batch = batch_build(
        actor=cast.manager, campaign=cast.campaign, annotator=cast.annotator, scan_ids=[failed.pk, open_.pk]
    )
    for scan in (failed, open_):
        rev = revision_save(
            actor=cast.annotator,
            campaign=cast.campaign,
            scan=scan,
            parent_id=None,
            full=label_volume(np.zeros(scan.shape, np.uint8), scan.shape),
            scan_labels={"diagnosis": "COVID-19"},
        )
        if scan is failed:
            revision_submit(actor=cast.annotator, campaign=cast.campaign, scan=scan, revision_id=rev.pk)
    first, second = Check.objects.filter(annotation__scan=failed).order_by("slot")
    finding = {"slice": 1, "position": [10.5, 12], "kind": "boundary", "text": "edge too tight"}
    check_record(actor=first.checker, check=first, verdict="fail", findings=[finding], time_spent_s=5)
    check_record(actor=second.checker, check=second, verdict="pass", time_spent_s=4)
    spot = SpotCheck.objects.filter(review__batch=approved).exclude(verdict=Verdict.PENDING).first()
    return {
        "campaign_id": cast.campaign.pk,
        "approved_batch_id": approved.pk,
        "batch_id": batch.pk,
        "approved_scan_id": cases[0][0].pk,
        "failed_scan_id": failed.pk,
        "open_scan_id": open_.pk,
        "check": first,
        "spot_check": spot,
        "export_id": export.pk,
        "run_id": run.pk,
        "version_id": run.model_version_id,
        "pseudonym": cases[0][0].study.patient.pseudonym,
    }


# The operations of qc/apis.py and modelassist/apis.py (download and audit CSV are files).
TYPED_OPERATIONS = {
    "annotation_submit",
    "qc_checks_list",
    "qc_check_retrieve",
    "qc_check_verdict",
    "qc_check_reassign",
    "qc_spot_checks_list",
    "qc_spot_check_retrieve",
    "qc_spot_check_verdict",
    "qc_spot_check_reassign",
    "scan_findings",
    "batch_board",
    "batch_reopen",
    "qc_metrics",
    "presegmentation_progress",
    "presegmentation_rerun",
    "model_versions_list",
    "model_version_upload",
    "model_version_activate",
    "model_versions_deactivate",
    "scan_report",
    "patient_reports",
    "exports_list",
    "export_create",
    "export_retrieve",
    "training_runs_list",
    "training_run_create",
    "training_run_retrieve",
}


def raw_schema() -> dict:
    import json

    from drf_spectacular.generators import SchemaGenerator

    raw = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(json.dumps(raw, default=str))


def strict_schema(raw: dict):
    """The schema with no undeclared field allowed in any object it names, as a schemathesis schema."""
    import schemathesis
    from django.core.wsgi import get_wsgi_application

    for component in raw["components"]["schemas"].values():
        if "properties" in component:
            component.setdefault("additionalProperties", False)
    schema = schemathesis.openapi.from_dict(raw)
    schema.app = get_wsgi_application()
    return schema


def test_every_qc_and_model_assist_answer_is_a_named_body():
    answers = {
        op["operationId"]: [
            body["schema"]
            for code, response in op["responses"].items()
            if code.startswith("2")
            for body in response.get("content", {}).values()
        ]
        for ops in raw_schema()["paths"].values()
        for op in ops.values()
    }
    assert set(answers) >= TYPED_OPERATIONS
    vague = {
        op: bodies
        for op, bodies in answers.items()
        if op in TYPED_OPERATIONS and not all("$ref" in b or "$ref" in b.get("items", {}) for b in bodies)
    }
    assert not vague, vague


def conforms(schema, user, method: str, path: str, **case) -> dict | list:
    """Call one operation as `user` and check its answer against the schema; the body."""
    cookies, headers = session_of(user)
    operation = schema[path][method]
    if "body" in case:
        case.setdefault("media_type", "application/json")
    made = operation.Case(**case)
    response = made.call(headers=headers, cookies=cookies)
    assert response.status_code < 300, (method, path, response.status_code, response.text[:500])
    made.validate_response(
        response, checks=[status_code_conformance, response_schema_conformance], headers=headers
    )
    return response.json()


@pytest.mark.django_db
def test_every_qc_and_model_assist_answer_matches_its_schema(cast, world):
    schema = strict_schema(raw_schema())
    w = world
    scan_path = "/api/campaigns/{campaign_id}/scans/{scan_id}/"
    with one_connection():
        # QC: the checker's queue and check (the failed round is closed: "other" is shown).
        checker = w["check"].checker
        conforms(schema, checker, "GET", "/api/qc/checks/")
        detail = conforms(
            schema, checker, "GET", "/api/qc/checks/{check_id}/", path_parameters={"check_id": w["check"].pk}
        )
        assert detail["other"] is not None and detail["findings"][0]["kind"] == "boundary"
        # The senior's spot check, decided.
        senior = w["spot_check"].senior
        conforms(schema, senior, "GET", "/api/qc/spot-checks/")
        conforms(
            schema,
            senior,
            "GET",
            "/api/qc/spot-checks/{spot_check_id}/",
            path_parameters={"spot_check_id": w["spot_check"].pk},
        )
        # The annotator: findings of the failed check, then resubmitting and submitting.
        ids = {"campaign_id": w["campaign_id"], "scan_id": w["failed_scan_id"]}
        findings = conforms(schema, cast.annotator, "GET", scan_path + "findings/", path_parameters=ids)
        assert findings["source"] == "checks" and findings["reviews"][0]["findings"]
        none_yet = {"campaign_id": w["campaign_id"], "scan_id": w["open_scan_id"]}
        conforms(schema, cast.annotator, "GET", scan_path + "findings/", path_parameters=none_yet)
        submitted = conforms(
            schema,
            cast.annotator,
            "POST",
            scan_path + "annotation/submit/",
            path_parameters=none_yet,
            body={"revision_id": _head(w["campaign_id"], w["open_scan_id"])},
        )
        # An open round: its check, its reassignment, the board as a data manager.
        from qc.models import Check

        open_check = Check.objects.filter(annotation_id=submitted["annotation_id"]).order_by("slot").first()
        conforms(
            schema,
            open_check.checker,
            "GET",
            "/api/qc/checks/{check_id}/",
            path_parameters={"check_id": open_check.pk},
        )
        conforms(
            schema,
            cast.manager,
            "POST",
            "/api/qc/checks/{check_id}/reassign/",
            path_parameters={"check_id": open_check.pk},
            body={"checker_id": cast.checker3.pk},
        )
        conforms(
            schema,
            cast.checker3,
            "POST",
            "/api/qc/checks/{check_id}/verdict/",
            path_parameters={"check_id": open_check.pk},
            body={"verdict": "pass", "time_spent_s": 3},
        )
        for batch_id in (w["batch_id"], w["approved_batch_id"]):
            conforms(
                schema,
                cast.manager,
                "GET",
                "/api/batches/{batch_id}/board/",
                path_parameters={"batch_id": batch_id},
            )
        conforms(schema, cast.manager, "GET", "/api/qc/metrics/", query={"campaign": w["campaign_id"]})
        conforms(
            schema,
            cast.manager,
            "GET",
            "/api/qc/metrics/",
            query={"campaign": w["campaign_id"], "batch": w["approved_batch_id"]},
        )
        conforms(
            schema,
            cast.manager,
            "POST",
            "/api/batches/{batch_id}/reopen/",
            path_parameters={"batch_id": w["approved_batch_id"]},
            body={"reason": "a second look"},
        )
        # Reopened: the senior reads a new draw.
        from qc.models import SpotCheck, Verdict

        pending = SpotCheck.objects.filter(
            review__batch_id=w["approved_batch_id"], verdict=Verdict.PENDING
        ).first()
        conforms(
            schema,
            cast.manager,
            "POST",
            "/api/qc/spot-checks/{spot_check_id}/reassign/",
            path_parameters={"spot_check_id": pending.pk},
            body={"senior_id": pending.senior_id},
        )
        conforms(
            schema,
            pending.senior,
            "POST",
            "/api/qc/spot-checks/{spot_check_id}/verdict/",
            path_parameters={"spot_check_id": pending.pk},
            body={"verdict": "pass"},
        )
        from qc.services import spot_check_record

        for sc in SpotCheck.objects.filter(review__batch_id=w["approved_batch_id"], verdict=Verdict.PENDING):
            spot_check_record(
                actor=sc.senior, spot_check=sc, verdict="pass", time_spent_s=1
            )  # approved again

        # Model assist.
        batch = {"batch_id": w["batch_id"]}
        conforms(
            schema, cast.manager, "GET", "/api/batches/{batch_id}/presegmentation/", path_parameters=batch
        )
        conforms(
            schema, cast.manager, "POST", "/api/batches/{batch_id}/presegmentation/", path_parameters=batch
        )
        conforms(
            schema, cast.manager, "GET", "/api/batches/{batch_id}/presegmentation/", path_parameters=batch
        )
        campaign = {"campaign_id": w["campaign_id"]}
        versions = conforms(
            schema,
            cast.manager,
            "GET",
            "/api/campaigns/{campaign_id}/model-versions/",
            path_parameters=campaign,
        )
        assert versions["versions"]
        conforms(
            schema,
            cast.manager,
            "POST",
            "/api/campaigns/{campaign_id}/model-versions/deactivate/",
            path_parameters=campaign,
            body={"reason": "baseline again"},
        )
        conforms(
            schema,
            cast.manager,
            "POST",
            "/api/model-versions/{version_id}/activate/",
            path_parameters={"version_id": w["version_id"]},
            body={"reason": "back"},
        )
        report_ids = {"campaign_id": w["campaign_id"], "scan_id": w["approved_scan_id"]}
        conforms(schema, cast.manager, "GET", scan_path + "report/", path_parameters=report_ids)
        conforms(
            schema,
            cast.manager,
            "GET",
            scan_path + "report/",
            path_parameters=report_ids,
            query={"revision": str(_head(w["campaign_id"], w["approved_scan_id"]))},
        )
        conforms(
            schema,
            cast.manager,
            "GET",
            "/api/patients/{pseudonym}/reports/",
            path_parameters={"pseudonym": w["pseudonym"]},
            query={"campaign": w["campaign_id"]},
        )
        conforms(
            schema, cast.manager, "GET", "/api/campaigns/{campaign_id}/exports/", path_parameters=campaign
        )
        conforms(
            schema,
            cast.manager,
            "GET",
            "/api/exports/{export_id}/",
            path_parameters={"export_id": w["export_id"]},
        )
        conforms(
            schema, cast.manager, "POST", "/api/campaigns/{campaign_id}/exports/", path_parameters=campaign
        )
        conforms(
            schema,
            cast.manager,
            "GET",
            "/api/campaigns/{campaign_id}/training-runs/",
            path_parameters=campaign,
        )
        run = conforms(
            schema,
            cast.manager,
            "GET",
            "/api/training-runs/{run_id}/",
            path_parameters={"run_id": w["run_id"]},
        )
        assert run["history"] and run["model_version"]["id"] == w["version_id"]
        conforms(
            schema,
            cast.manager,
            "POST",
            "/api/campaigns/{campaign_id}/training-runs/",
            path_parameters=campaign,
            body={"export_id": w["export_id"], "params": TINY},
        )


def _head(campaign_id: int, scan_id: int) -> int:
    from annotation.models import Annotation

    return Annotation.objects.get(campaign_id=campaign_id, scan_id=scan_id).head_id

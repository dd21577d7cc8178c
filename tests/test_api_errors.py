"""Bad input answers 4xx with a reason, never a 500 (issue #12, item 3; cases schemathesis found).

Each test here is a request that once crashed the server or answered an HTML page.
"""

from __future__ import annotations

import base64
import gzip
import json

import numpy as np
import pytest
from django.test import override_settings

from annotation.models import Revision
from core.services.batches import batch_build


def gz(arr: np.ndarray) -> str:
    return base64.b64encode(gzip.compress(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())).decode()


@pytest.fixture
def scan(cast, import_phantoms):
    """One 12×32×32 phantom scan in a batch assigned to the annotator."""
    scan = import_phantoms(1, slices=12, size=32)[0]
    batch_build(actor=cast.manager, campaign=cast.campaign, annotator=cast.annotator)
    return scan


def scan_url(cast, scan, tail: str) -> str:
    return f"/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/{tail}"


def assert_reason(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body.get("detail") or body, body
    return body


def test_labels_of_a_revision_that_is_not_an_id_is_400(cast, api, scan):
    api.force_authenticate(cast.annotator)

    response = api.get(scan_url(cast, scan, "annotation/labels/?revision=abc"))

    body = assert_reason(response, 400)
    assert body["code"] == "bad_revision" and "abc" in body["detail"]


@pytest.mark.parametrize("raw", ["²", "9" * 40, "-1"])
def test_labels_of_a_revision_with_odd_digits_is_400(cast, api, scan, raw):
    api.force_authenticate(cast.annotator)

    response = api.get(scan_url(cast, scan, "annotation/labels/"), {"revision": raw})

    assert assert_reason(response, 400)["code"] == "bad_revision"


def test_a_save_whose_if_match_has_thousands_of_digits_is_400(cast, api, scan):
    api.force_authenticate(cast.annotator)

    response = api.post(
        scan_url(cast, scan, "annotation/revisions/"),
        {"boxes": []},
        format="json",
        HTTP_IF_MATCH='"rev-' + "7" * 6000 + '"',
    )

    assert assert_reason(response, 400)["code"] == "bad_if_match"
    assert not Revision.objects.exists()


def test_a_save_with_both_full_and_boxes_is_400_and_saves_nothing(cast, api, scan):
    api.force_authenticate(cast.annotator)
    full = np.zeros(scan.shape, np.uint8)
    box = np.ones((1, 2, 2), np.uint8)

    response = api.post(
        scan_url(cast, scan, "annotation/revisions/"),
        {
            "parent_id": None,
            "full": {"encoding": "gzip", "data": gz(full)},
            "boxes": [{"offset": [0, 0, 0], "shape": [1, 2, 2], "encoding": "gzip", "data": gz(box)}],
        },
        format="json",
    )

    body = assert_reason(response, 400)
    assert "not both" in str(body)
    assert not Revision.objects.exists()


@pytest.mark.parametrize("radius", [1e308, 2001])
def test_region_grow_with_an_enormous_radius_is_400(cast, api, scan, radius):
    api.force_authenticate(cast.annotator)

    response = api.post(
        scan_url(cast, scan, "region-grow/"),
        {"seed": [6, 16, 16], "tolerance": 100, "radius_mm": radius},
        format="json",
    )

    body = assert_reason(response, 400)
    assert "radius_mm" in body


def test_region_grow_with_the_largest_radius_still_grows(cast, api, scan):
    api.force_authenticate(cast.annotator)

    response = api.post(
        scan_url(cast, scan, "region-grow/"),
        {"seed": [6, 16, 16], "tolerance": 100, "radius_mm": 2000},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["voxels"] >= 1


def test_the_grower_itself_refuses_an_enormous_radius():
    from annotation import region_grow

    volume = np.zeros((4, 4, 4), np.int16)
    with pytest.raises(region_grow.RegionGrowError, match="radius_mm"):
        region_grow.grow_region(volume, (1, 1, 1), tolerance=10, spacing=(0.7, 0.7, 1.0), radius_mm=1e308)


def test_sends_of_a_scan_that_is_not_an_id_is_400(cast, api):
    api.force_authenticate(cast.manager)

    response = api.get("/api/pacs/sends/?scan=abc")

    assert assert_reason(response, 400)["code"] == "bad_scan"


def test_sends_of_a_scan_id_lists_them(cast, api):
    api.force_authenticate(cast.manager)

    response = api.get("/api/pacs/sends/?scan=12")

    assert response.status_code == 200 and response.json() == []


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_a_body_over_the_limit_is_a_json_413(cast, client):
    client.force_login(cast.manager)

    response = client.post(
        "/api/campaigns/1/batches/", data='{"name": "' + "x" * 2000 + '"}', content_type="application/json"
    )

    body = assert_reason(response, 413)
    assert body["code"] == "too_large" and body["limit"] == 1000


@override_settings(INGEST_MAX_UPLOAD_BYTES=10_000, DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_a_form_field_django_finds_too_big_is_a_json_413(cast, client):
    # Within the upload limit, but a text field over what Django keeps in memory: Django
    # raises RequestDataTooBig while the view reads the form (it used to answer an HTML 400).
    client.force_login(cast.manager)

    response = client.post("/api/imports/", {"institution": "x" * 2000})

    assert assert_reason(response, 413)["code"] == "too_large"


def test_a_declared_content_length_over_the_limit_is_refused_before_reading(cast, client, settings):
    from django.test import RequestFactory

    from platform_core.request_limits import RequestSizeLimitMiddleware

    read = []

    class Body:
        def read(self, *args):
            read.append(args)
            return b""

    request = RequestFactory().post("/api/campaigns/1/batches/", content_type="application/json")
    request.META["CONTENT_LENGTH"] = str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    request.META["wsgi.input"] = Body()
    request._stream = Body()

    def view(request):
        raise AssertionError("the view must not run")

    response = RequestSizeLimitMiddleware(view)(request)

    assert response.status_code == 413 and not read
    assert json.loads(response.content)["code"] == "too_large"


def test_a_content_length_of_thousands_of_digits_is_413(cast, client):
    client.force_login(cast.manager)

    response = client.post(
        "/api/campaigns/1/batches/", data="{}", content_type="application/json", CONTENT_LENGTH="9" * 6000
    )

    assert assert_reason(response, 413)["code"] == "too_large"


@override_settings(INGEST_MAX_UPLOAD_BYTES=5000, DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_multipart_uploads_get_the_upload_limit_not_the_memory_limit(cast, client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(cast.manager)

    small = client.post("/api/imports/", {"files": SimpleUploadedFile("a.dcm", b"x" * 2000)})
    big = client.post("/api/imports/", {"files": SimpleUploadedFile("a.dcm", b"x" * 6000)})

    assert small.status_code != 413, small.content
    assert assert_reason(big, 413)["limit"] == 5000


@pytest.mark.parametrize("body", [{"annotator_id": "abc"}, ["annotator_id", 1], "annotator"])
def test_assigning_a_batch_to_a_non_id_is_400(cast, api, scan, body):
    from core.models import Batch

    api.force_authenticate(cast.manager)
    batch = Batch.objects.get()

    response = api.post(f"/api/batches/{batch.pk}/assign/", body, format="json")

    assert_reason(response, 400)
    assert Batch.objects.get().annotator == cast.annotator


@pytest.mark.parametrize("body", [["reason"], {"reason": {"why": "x"}}])
def test_a_model_version_change_with_a_reason_that_is_not_text_is_400(cast, api, body):
    api.force_authenticate(cast.manager)

    response = api.post(f"/api/campaigns/{cast.campaign.pk}/model-versions/deactivate/", body, format="json")

    assert "reason" in assert_reason(response, 400) or "non_field_errors" in response.json()


def test_a_model_version_change_still_takes_a_long_reason_as_text(cast, api):
    api.force_authenticate(cast.manager)

    response = api.post(
        f"/api/campaigns/{cast.campaign.pk}/model-versions/deactivate/", {"reason": "x" * 600}, format="json"
    )

    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "body",
    [
        {"scan_ids": [9, 281474976710657, 26391535282360607047680]},  # found by tests/test_api_fuzz.py
        {"scan_ids": [-4]},
        {"annotator_id": 2**64},
        {"institution_id": 2**63},
        {"size": 10**30},
    ],
)
def test_building_a_batch_with_ids_no_database_can_hold_is_400(cast, api, scan, body):
    from core.models import Batch

    api.force_authenticate(cast.manager)
    before = list(Batch.objects.values_list("pk", flat=True))

    response = api.post(f"/api/campaigns/{cast.campaign.pk}/batches/", body, format="json")

    assert_reason(response, 400)
    assert list(Batch.objects.values_list("pk", flat=True)) == before


HUGE = 2**64  # past what SQLite and PostgreSQL compare: the fuzz's batch-building 500 (a78b771)


@pytest.mark.parametrize(
    ("tail", "body"),
    [
        ("annotation/revisions/", {"parent_id": HUGE, "scan_labels": {}}),
        (
            "annotation/revisions/",
            {
                "boxes": [
                    {"offset": [HUGE, 0, 0], "shape": [1, 1, 1], "encoding": "gzip", "data": gz(np.ones(1))}
                ]
            },
        ),
        ("region-grow/", {"seed": [0, HUGE, 0], "tolerance": 100}),
    ],
)
def test_annotation_requests_with_numbers_no_database_can_hold_are_400(cast, api, scan, tail, body):
    api.force_authenticate(cast.annotator)

    response = api.post(scan_url(cast, scan, tail), body, format="json")

    assert_reason(response, 400)
    assert not Revision.objects.exists()


def test_assigning_a_batch_to_an_id_no_database_can_hold_is_400(cast, api, scan):
    from core.models import Batch

    api.force_authenticate(cast.manager)
    batch = Batch.objects.get()

    response = api.post(f"/api/batches/{batch.pk}/assign/", {"annotator_id": HUGE}, format="json")

    assert_reason(response, 400)
    assert Batch.objects.get().annotator == cast.annotator


def test_reopening_scans_no_database_can_hold_is_400(cast, api, scan):
    from core.models import Batch

    api.force_authenticate(cast.manager)
    batch = Batch.objects.get()
    status = batch.status

    response = api.post(f"/api/batches/{batch.pk}/reopen/", {"scan_ids": [HUGE]}, format="json")

    assert_reason(response, 400)
    assert Batch.objects.get().status == status


def test_retraining_an_export_no_database_can_hold_is_400(cast, api):
    from modelassist.models import TrainingRun

    api.force_authenticate(cast.manager)

    response = api.post(
        f"/api/campaigns/{cast.campaign.pk}/training-runs/", {"export_id": HUGE}, format="json"
    )

    assert_reason(response, 400)
    assert not TrainingRun.objects.exists()

"""Annotation API: revisions, immutability, stale saves, box edits, bad input, permissions."""

from __future__ import annotations

import base64
import gzip

import numpy as np
import pytest

from annotation import label_codec
from annotation.models import Annotation, ImmutableRevision, Revision
from core.services.batches import batch_build


def gz(arr: np.ndarray) -> str:
    return base64.b64encode(gzip.compress(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())).decode()


@pytest.fixture
def assigned(cast, import_phantoms):
    """One 12×32×32 phantom scan in a batch assigned to the annotator."""
    scan = import_phantoms(1, slices=12, size=32)[0]
    batch_build(actor=cast.manager, campaign=cast.campaign, annotator=cast.annotator)
    return scan


def url(cast, scan, tail=""):
    return f"/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/{tail}"


def save(api, cast, scan, body, etag=None):
    headers = {"HTTP_IF_MATCH": etag} if etag else {}
    return api.post(url(cast, scan, "annotation/revisions/"), body, format="json", **headers)


def test_first_save_then_box_edit_builds_on_the_parent(cast, api, assigned):
    api.force_authenticate(cast.annotator)
    full = np.zeros(assigned.shape, np.uint8)
    full[2:4, 5:9, 5:9] = 1
    r1 = save(
        api,
        cast,
        assigned,
        {"parent_id": None, "full": {"encoding": "gzip", "data": gz(full)}, "time_spent_s": 12.5},
    )
    assert r1.status_code == 201, r1.content
    box = np.full((1, 2, 3), 2, np.uint8)
    r2 = save(
        api,
        cast,
        assigned,
        {
            "boxes": [{"offset": [6, 10, 10], "shape": [1, 2, 3], "encoding": "gzip", "data": gz(box)}],
            "scan_labels": {"diagnosis": "COVID-19"},
        },
        etag=r1["ETag"],
    )
    assert r2.status_code == 201, r2.content

    labels = api.get(url(cast, assigned, "annotation/labels/"))
    vol = label_codec.decode_volume(labels.content, [int(n) for n in labels["X-Label-Shape"].split(",")])
    assert labels["ETag"] == r2["ETag"]
    assert (vol == 1).sum() == 32 and (vol == 2).sum() == 6 and vol[6, 10, 12] == 2
    assert r2.json()["voxel_counts"] == {"1": 32, "2": 6}
    assert r2.json()["parent_id"] == r1.json()["id"]
    first = api.get(url(cast, assigned, f"annotation/labels/?revision={r1.json()['id']}"))
    assert (label_codec.decode_volume(first.content, assigned.shape) == 2).sum() == 0  # history intact
    assert Annotation.objects.get().state == "in_progress"


def test_stale_save_answers_409_with_the_current_head(cast, api, assigned):
    api.force_authenticate(cast.annotator)
    first = save(api, cast, assigned, {"parent_id": None, "boxes": []})
    second = save(api, cast, assigned, {"boxes": []}, etag=first["ETag"])
    stale = save(api, cast, assigned, {"boxes": []}, etag=first["ETag"])

    assert stale.status_code == 409
    assert stale.json()["code"] == "stale_parent"
    assert stale.json()["head"]["id"] == second.json()["id"]
    assert Revision.objects.count() == 2


def test_save_without_a_parent_is_refused(cast, api, assigned):
    api.force_authenticate(cast.annotator)
    assert save(api, cast, assigned, {"boxes": []}).status_code == 428


def test_revisions_are_immutable(cast, api, assigned):
    api.force_authenticate(cast.annotator)
    save(api, cast, assigned, {"parent_id": None, "boxes": []})
    rev = Revision.objects.get()
    rev.scan_labels = {"diagnosis": "COVID-19"}
    with pytest.raises(ImmutableRevision):
        rev.save()
    with pytest.raises(ImmutableRevision):
        rev.delete()


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"full": {"encoding": "gzip", "data": gz(np.zeros((3, 3, 3), np.uint8))}}, 400, "bytes"),
        (
            {
                "boxes": [
                    {
                        "offset": [11, 0, 0],
                        "shape": [2, 1, 1],
                        "encoding": "gzip",
                        "data": gz(np.ones((2, 1, 1))),
                    }
                ]
            },
            400,
            "slices",
        ),
        (
            {
                "boxes": [
                    {
                        "offset": [0, -1, 0],
                        "shape": [1, 1, 1],
                        "encoding": "gzip",
                        "data": gz(np.ones((1, 1, 1))),
                    }
                ]
            },
            400,
            "negative",
        ),
        (
            {
                "boxes": [
                    {
                        "offset": [0, 0, 0],
                        "shape": [1, 1, 1],
                        "encoding": "gzip",
                        "data": gz(np.full((1, 1, 1), 9)),
                    }
                ]
            },
            400,
            "9",
        ),
        (
            {"boxes": [{"offset": [0, 0, 0], "shape": [1, 1, 1], "encoding": "gzip", "data": "%%%"}]},
            400,
            "base64",
        ),
        ({"boxes": [], "scan_labels": {"diagnosis": "flu"}}, 400, "not a choice"),
    ],
)
def test_bad_input_gets_a_reason_and_saves_nothing(cast, api, assigned, body, status, words):
    api.force_authenticate(cast.annotator)
    response = save(api, cast, assigned, {"parent_id": None, **body})
    assert response.status_code == status, response.content
    assert words in str(response.json()).lower() or words in str(response.json())
    assert Revision.objects.count() == 0


def test_scans_outside_the_callers_batches_answer_404(cast, api, assigned):
    api.force_authenticate(cast.annotator2)
    assert save(api, cast, assigned, {"parent_id": None, "boxes": []}).status_code == 404
    assert api.get(url(cast, assigned, "annotation/")).status_code == 404
    assert (
        api.post(
            url(cast, assigned, "region-grow/"), {"seed": [1, 1, 1], "tolerance": 50}, format="json"
        ).status_code
        == 404
    )
    api.force_authenticate(cast.outsider)
    assert api.get(f"/api/scans/{assigned.pk}/").status_code == 404
    assert api.get(url(cast, assigned, "annotation/labels/")).status_code == 404
    api.force_authenticate(cast.manager)  # the data manager reads but does not annotate
    assert api.get(f"/api/scans/{assigned.pk}/").status_code == 200
    assert save(api, cast, assigned, {"parent_id": None, "boxes": []}).status_code == 404


def test_region_grow_returns_a_box_mask_inside_a_lesion(cast, api, assigned, settings):
    from pathlib import Path

    api.force_authenticate(cast.annotator)
    volume = np.load(Path(settings.MEDIA_ROOT) / assigned.storage_dir / "volume.npy")
    z, y, x = np.argwhere(volume > -300)[len(np.argwhere(volume > -300)) // 2]  # any dense voxel
    response = api.post(
        url(cast, assigned, "region-grow/"),
        {"seed": [int(z), int(y), int(x)], "tolerance": 100, "connectivity": 6},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    raw = label_codec.decode_payload(body["encoding"], body["data"], int(np.prod(body["shape"])))
    mask = np.frombuffer(raw, np.uint8).reshape(body["shape"])
    assert mask.sum() == body["voxels"] >= 1
    oz, oy, ox = body["offset"]
    assert mask[z - oz, y - oy, x - ox] == 1
    region_hu = volume[oz : oz + mask.shape[0], oy : oy + mask.shape[1], ox : ox + mask.shape[2]][mask == 1]
    assert region_hu.min() >= body["seed_hu"] - 100 and region_hu.max() <= body["seed_hu"] + 100


def test_region_grow_seed_outside_the_scan_is_a_400(cast, api, assigned):
    api.force_authenticate(cast.annotator)
    response = api.post(
        url(cast, assigned, "region-grow/"), {"seed": [99, 0, 0], "tolerance": 10}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "bad_seed"


def test_labels_answer_octet_stream_clients_and_say_when_there_is_no_revision(cast, api, assigned):
    api.force_authenticate(cast.annotator)
    missing = api.get(url(cast, assigned, "annotation/labels/"), HTTP_ACCEPT="application/octet-stream")
    assert missing.status_code == 404
    assert b"no_revision" in missing.content
    save(api, cast, assigned, {"parent_id": None, "boxes": []})
    found = api.get(url(cast, assigned, "annotation/labels/"), HTTP_ACCEPT="application/octet-stream")
    assert found.status_code == 200 and found["X-Label-Encoding"] == "zstd"

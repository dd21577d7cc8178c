"""Issue #16 §1: opening a scan for editing warms the web process's caches, so the first
region-growing click and the first box save do not read and decode the scan themselves."""

from __future__ import annotations

import base64
import gzip

import numpy as np
import pytest

from annotation import storage, warming
from core.services.batches import batch_build
from imaging import volume_cache


@pytest.fixture
def assigned(cast, import_phantoms):
    scan = import_phantoms(1, slices=12, size=32)[0]
    batch_build(actor=cast.manager, campaign=cast.campaign, annotator=cast.annotator)
    return scan


def url(cast, scan, tail=""):
    return f"/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/{tail}"


def warmed() -> None:
    """Wait until the background loads submitted so far have run (one loader thread, in order)."""
    warming._loader.submit(lambda: None).result(timeout=30)


def box_save(api, cast, scan, value: int, etag: str | None):
    data = base64.b64encode(gzip.compress(np.full((1, 2, 2), value, np.uint8).tobytes())).decode()
    body = {"boxes": [{"offset": [3, 4, 4], "shape": [1, 2, 2], "encoding": "gzip", "data": data}]}
    if etag is None:
        body["parent_id"] = None
    headers = {"HTTP_IF_MATCH": etag} if etag else {}
    return api.post(url(cast, scan, "annotation/revisions/"), body, format="json", **headers)


def test_opening_a_scan_for_editing_loads_its_volume_before_the_first_click(cast, api, assigned):
    volume_cache.cache_clear()
    api.force_authenticate(cast.annotator)

    opened = api.get(url(cast, assigned, "annotation/"))
    warmed()
    grown = api.post(
        url(cast, assigned, "region-grow/"), {"seed": [6, 16, 16], "tolerance": 2000}, format="json"
    )

    assert opened.status_code == 200 and grown.status_code == 200, grown.content
    info = volume_cache.cache_info()
    # The warm-up read it (the one miss); the click found it in memory.
    assert (info["misses"], info["hits"], info["entries"]) == (1, 1, 1)


def test_opening_a_scan_warms_its_head_labels_for_the_next_box_save(cast, api, assigned):
    api.force_authenticate(cast.annotator)
    first = box_save(api, cast, assigned, 1, None)
    assert first.status_code == 201, first.content
    from annotation.models import Revision

    head = Revision.objects.get(pk=first.json()["id"])
    storage._warm.clear()  # as in another process, or after the cache evicted it

    api.get(url(cast, assigned, "annotation/"))
    warmed()

    assert storage._warm.has(head.label_sha256)
    second = box_save(api, cast, assigned, 2, first["ETag"])
    assert second.status_code == 201, second.content
    labels = storage.load_labels(Revision.objects.get(pk=second.json()["id"]).label_sha256, assigned.shape)
    assert (labels == 2).sum() == 4 and (labels == 1).sum() == 0  # the box replaced, nothing else


def test_a_scan_no_longer_editable_is_not_warmed(cast, api, assigned):
    from annotation.models import Annotation

    api.force_authenticate(cast.annotator)
    assert box_save(api, cast, assigned, 1, None).status_code == 201
    Annotation.objects.filter(scan=assigned).update(state="submitted")
    volume_cache.cache_clear()

    opened = api.get(url(cast, assigned, "annotation/"))
    warmed()

    assert opened.status_code == 200 and opened.json()["state"] == "submitted"
    assert volume_cache.cache_info()["entries"] == 0


def test_a_failed_warm_up_leaves_the_open_answering(cast, api, assigned, settings, tmp_path, caplog):
    api.force_authenticate(cast.annotator)
    settings.MEDIA_ROOT = tmp_path / "gone"  # the volume file cannot be read

    opened = api.get(url(cast, assigned, "annotation/"))
    warmed()

    assert opened.status_code == 200
    assert "could not warm the caches" in caplog.text


def test_a_box_save_on_an_open_annotation_costs_ten_queries(
    cast, api, assigned, django_assert_max_num_queries
):
    """Each query is a round trip that waits for the database's share of the CPU under load:
    a save no longer looks up the annotation three times (12 before; a browser session adds two)."""
    api.force_authenticate(cast.annotator)
    first = box_save(api, cast, assigned, 1, None)

    with django_assert_max_num_queries(10):
        second = box_save(api, cast, assigned, 2, first["ETag"])

    assert second.status_code == 201, second.content
    assert second.json()["parent_id"] == first.json()["id"]

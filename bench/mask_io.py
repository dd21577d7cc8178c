"""Label volume I/O through the API on a 512×512×300 scan with ~2 % lesion voxels.

Prints JSON: box_save_ms (a 64³ box edit), full_save_ms (a whole volume), full_load_ms
(GET and decode the head's volume), full_bytes (its size on the wire).
"""

from __future__ import annotations

import base64
import json
import time

import _django
import numpy as np
import zstandard

SLICES, SIZE = 300, 512


def blobby_mask(shape: tuple[int, int, int], share: float, seed: int = 0) -> np.ndarray:
    """Ellipsoid lesions until about `share` of the voxels are labelled, classes 1 and 2."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, np.uint8)
    target = share * mask.size
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    while np.count_nonzero(mask) < target:
        c = rng.uniform([20, 100, 100], [shape[0] - 20, shape[1] - 100, shape[2] - 100])
        r = rng.uniform(8, 25, 3)
        z0, z1 = int(max(c[0] - r[0], 0)), int(min(c[0] + r[0] + 1, shape[0]))
        sub = ((zz[z0:z1] - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1
        mask[z0:z1][sub] = rng.integers(1, 3)
    return mask


def main() -> None:
    work = _django.setup()
    from rest_framework.test import APIClient

    from annotation import label_codec
    from core.models import Scan
    from core.services.batches import batch_build
    from imaging.ingest.service import ingest_path

    inst, campaign, people = _django.cast()
    _django.phantom_series(
        work / "p", slices=SLICES, rows=SIZE, cols=SIZE, seed=3, patient_id="M-1", patient_name="M^1"
    )
    report = ingest_path(work / "p", institution=inst, campaign_id=campaign.pk)
    scan = Scan.objects.get(pk=report.scans_created[0])
    batch_build(actor=people["manager"], campaign=campaign, annotator=people["annotator"])
    client = APIClient()
    client.force_authenticate(people["annotator"])
    base = f"/api/campaigns/{campaign.pk}/scans/{scan.pk}/annotation/"
    mask = blobby_mask(scan.shape, 0.02)
    client.get("/api/me/")  # a running server has its URLs loaded; the first request pays for that

    payload = base64.b64encode(zstandard.ZstdCompressor(level=1).compress(mask.tobytes())).decode()
    t0 = time.perf_counter()
    r = client.post(
        base + "revisions/", {"parent_id": None, "full": {"encoding": "zstd", "data": payload}}, format="json"
    )
    full_save_ms = (time.perf_counter() - t0) * 1000
    assert r.status_code == 201, r.content[:300]

    box = np.ones((64, 64, 64), np.uint8)
    box_payload = base64.b64encode(zstandard.ZstdCompressor(level=1).compress(box.tobytes())).decode()
    t0 = time.perf_counter()
    r = client.post(
        base + "revisions/",
        {
            "boxes": [
                {"offset": [100, 200, 200], "shape": [64, 64, 64], "encoding": "zstd", "data": box_payload}
            ]
        },
        format="json",
        HTTP_IF_MATCH=r["ETag"],
    )
    box_save_ms = (time.perf_counter() - t0) * 1000
    assert r.status_code == 201, r.content[:300]

    t0 = time.perf_counter()
    r = client.get(base + "labels/")
    loaded = label_codec.decode_volume(r.content, scan.shape)
    full_load_ms = (time.perf_counter() - t0) * 1000
    assert loaded[100, 200, 200] == 1

    print(
        json.dumps(
            {
                "box_save_ms": round(box_save_ms, 1),
                "full_save_ms": round(full_save_ms, 1),
                "full_load_ms": round(full_load_ms, 1),
                "full_bytes": len(r.content),
                "lesion_share": round(float(np.count_nonzero(mask)) / mask.size, 4),
            }
        )
    )


if __name__ == "__main__":
    main()

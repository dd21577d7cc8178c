"""3D region-growing brush through the API, on a 512×512×300 phantom and on real lung1 anatomy.

Prints JSON: lesion_p50_ms, lesion_p95_ms (50 seeds inside lesions), lung_p50_ms, lung_p95_ms
(10 seeds that fill a whole lung), pass_ms (one memory pass over the volume, same run) and
lung1_dice (a grow from a seed inside the lung1 tumour against its label).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import _django
import numpy as np

SLICES, SIZE = 300, 512


def timed_grow(client, url: str, body: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    response = client.post(url, body, format="json")
    elapsed = (time.perf_counter() - t0) * 1000
    assert response.status_code == 200, response.content[:300]
    return elapsed, response.json()


def mask_of(body: dict, shape: tuple[int, ...]) -> np.ndarray:
    from annotation import label_codec

    raw = label_codec.decode_payload(body["encoding"], body["data"], int(np.prod(body["shape"])))
    out = np.zeros(shape, np.uint8)
    oz, oy, ox = body["offset"]
    d, h, w = body["shape"]
    out[oz : oz + d, oy : oy + h, ox : ox + w] = np.frombuffer(raw, np.uint8).reshape(d, h, w)
    return out


def main() -> None:
    work = _django.setup()
    from django.conf import settings
    from rest_framework.test import APIClient

    from core.services.batches import batch_build
    from demo.phantom import nrrd_to_dicom_series
    from imaging.ingest.service import ingest_path

    inst, campaign, people = _django.cast()
    _, truth = _django.phantom_series(
        work / "phantom", slices=SLICES, rows=SIZE, cols=SIZE, seed=7, patient_id="B-1", patient_name="B^1"
    )
    nrrd = _django.lung1_file("lung1_image.nrrd")
    nrrd_to_dicom_series(nrrd, work / "lung1", patient_id="LUNG1", patient_name="LUNG^1")
    phantom_scan = _import(ingest_path, work / "phantom", inst, campaign)
    lung1_scan = _import(ingest_path, work / "lung1", inst, campaign)
    batch_build(actor=people["manager"], campaign=campaign, annotator=people["annotator"])
    client = APIClient()
    client.force_authenticate(people["annotator"])
    volume = np.load(Path(settings.MEDIA_ROOT) / phantom_scan.storage_dir / "volume.npy")
    rng = np.random.default_rng(0)

    url = f"/api/campaigns/{campaign.pk}/scans/{phantom_scan.pk}/region-grow/"
    timed_grow(client, url, {"seed": [0, 0, 0], "tolerance": 1})  # first click loads the volume cache
    lesion_voxels = np.argwhere(truth.lesions > 0)
    lesion_ms = []
    for idx in rng.choice(len(lesion_voxels), 50, replace=False):
        seed = [int(v) for v in lesion_voxels[idx]]
        ms, _ = timed_grow(client, url, {"seed": seed, "tolerance": 120, "connectivity": 6, "radius_mm": 40})
        lesion_ms.append(ms)
    lung_voxels = np.argwhere((truth.lungs > 0) & (truth.lesions == 0) & (volume < -700))
    lung_ms = []
    for idx in rng.choice(len(lung_voxels), 10, replace=False):
        seed = [int(v) for v in lung_voxels[idx]]
        ms, _ = timed_grow(
            client,
            url,
            {"seed": seed, "lower": -1000, "upper": -500, "connectivity": 6, "max_voxels": 20_000_000},
        )
        lung_ms.append(ms)

    t0 = time.perf_counter()
    int(np.count_nonzero(volume > -500))
    pass_ms = (time.perf_counter() - t0) * 1000

    print(
        json.dumps(
            {
                "lesion_p50_ms": round(float(np.percentile(lesion_ms, 50)), 1),
                "lesion_p95_ms": round(float(np.percentile(lesion_ms, 95)), 1),
                "lung_p50_ms": round(float(np.percentile(lung_ms, 50)), 1),
                "lung_p95_ms": round(float(np.percentile(lung_ms, 95)), 1),
                "pass_ms": round(pass_ms, 1),
                "lung1_dice": round(lung1_dice(client, campaign, lung1_scan), 3),
            }
        )
    )


def _import(ingest_path, folder, inst, campaign):
    from core.models import Scan

    report = ingest_path(folder, institution=inst, campaign_id=campaign.pk)
    return Scan.objects.get(pk=report.scans_created[0])


def lung1_dice(client, campaign, scan) -> float:
    import SimpleITK as sitk

    from annotation.dice import mask_dice

    label = sitk.GetArrayFromImage(sitk.ReadImage(str(_django.lung1_file("lung1_label.nrrd"))))
    points = np.argwhere(label > 0)
    centre = points.mean(axis=0)
    seed = [int(v) for v in points[np.argmin(((points - centre) ** 2).sum(axis=1))]]
    # A solid tumour in aerated lung: soft-tissue HU, kept off the chest wall by a radius.
    _, body = timed_grow(
        client,
        f"/api/campaigns/{campaign.pk}/scans/{scan.pk}/region-grow/",
        {"seed": seed, "lower": -400, "upper": 400, "connectivity": 6, "radius_mm": 30},
    )
    return mask_dice(mask_of(body, label.shape) > 0, label > 0)


if __name__ == "__main__":
    main()

"""The whole loop: phantoms of four hospitals → batch (pre-segmented by the baseline) → scripted
annotation on top of revision 0 (ground truth with noise) → three-step QC to approval →
export (layout, hashes, split rules, files read back) → a tiny training run → a new model
version, promoted or not with a stated reason → pre-segmentation of a new scan with it.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from scipy import ndimage

from tests.modelassist.curated import eager_celery, import_scans

LABELS = {"diagnosis": "COVID-19"}
HOSPITALS = [("north", 3, 0), ("south", 1, 10), ("east", 1, 20), ("west", 1, 30)]


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # These tiny campaigns have one or two test cases; tests/modelassist/test_patient_split.py
    # covers the default of five.
    settings.CURATECT_MIN_TEST_CASES = 1


@pytest.fixture
def eager():
    with eager_celery() as app:
        yield app


def noisy(truth: np.ndarray, seed: int) -> np.ndarray:
    """What an annotator draws: the truth with a ragged edge (a dilated or eroded slice here and
    there), and a small blob where a tiny phantom has no lesion."""
    rng = np.random.default_rng(seed)
    labels = truth.astype(np.uint8).copy()
    for z in range(labels.shape[0]):
        if labels[z].any() and rng.random() < 0.5:
            grown = ndimage.grey_dilation(labels[z], size=(2, 2)) if rng.random() < 0.5 else labels[z]
            labels[z] = np.where(rng.random(labels[z].shape) < 0.9, grown, labels[z])
    if not labels.any():
        z, y, x = (n // 2 for n in labels.shape)
        labels[z - 1 : z + 1, y - 2 : y + 2, x - 2 : x + 2] = 1
    return labels


def head_id(campaign, scan):
    from annotation.models import Annotation

    return Annotation.objects.get(campaign=campaign, scan=scan).head_id


def test_curated_labels_retrain_the_model_that_presegments_the_next_scan(
    cast, tmp_path, api, eager, django_capture_on_commit_callbacks
):
    from annotation.models import Revision
    from annotation.services import revision_save
    from core.services.batches import batch_build
    from modelassist.models import ModelVersion
    from modelassist.selectors import media_path, scan_volume
    from modelassist.services.export_files import read_nifti, read_seg_labels
    from qc.models import Check, SpotCheck, Verdict
    from qc.services import check_record, revision_submit, spot_check_record

    campaign = cast.campaign
    scans = []
    for slug, n, seed in HOSPITALS:
        scans += import_scans(cast, tmp_path, slug, n, first_seed=seed, slices=12, size=48)

    # 1. The batch is assigned: the baseline pre-segments every scan as revision 0.
    with django_capture_on_commit_callbacks(execute=True):
        batch = batch_build(
            actor=cast.manager, campaign=campaign, annotator=cast.annotator, scan_ids=[s.pk for s, _ in scans]
        )
    assert all(Revision.objects.get(pk=head_id(campaign, s)).model_label == "baseline" for s, _ in scans)

    # 2. The annotator edits the pre-segmentation into (noisy) truth and submits.
    drawn = {}
    for i, (scan, truth) in enumerate(scans):
        drawn[scan.pk] = noisy(truth, seed=i)
        rev = revision_save(
            actor=cast.annotator,
            campaign=campaign,
            scan=scan,
            parent_id=head_id(campaign, scan),
            full=drawn[scan.pk],
            scan_labels=LABELS,
            time_spent_s=300,
        )
        assert rev.number == 1 and rev.parent.number == 0
        revision_submit(actor=cast.annotator, campaign=campaign, scan=scan, revision_id=rev.pk)

    # 3. QC: one scan fails a check and is revised once; then both checkers pass everything.
    first = scans[0][0]
    fail = Check.objects.filter(annotation__scan=first).order_by("slot").first()
    check_record(
        actor=fail.checker,
        check=fail,
        verdict="fail",
        findings=[{"slice": 5, "position": [20, 20], "kind": "boundary", "text": "edge too loose"}],
    )
    other = Check.objects.get(annotation__scan=first, round=1, verdict=Verdict.PENDING)
    check_record(actor=other.checker, check=other, verdict="pass")
    drawn[first.pk] = drawn[first.pk].copy()
    drawn[first.pk][0] = 0  # the fix
    rev = revision_save(
        actor=cast.annotator,
        campaign=campaign,
        scan=first,
        parent_id=head_id(campaign, first),
        full=drawn[first.pk],
        scan_labels=LABELS,
        time_spent_s=60,
    )
    revision_submit(actor=cast.annotator, campaign=campaign, scan=first, revision_id=rev.pk)
    for check in Check.objects.filter(verdict=Verdict.PENDING).order_by("pk"):
        check_record(actor=check.checker, check=check, verdict="pass")
    with django_capture_on_commit_callbacks(execute=True):  # approval sends retrain_if_due (0 = off here)
        for spot in SpotCheck.objects.filter(verdict=Verdict.PENDING).order_by("pk"):
            spot_check_record(actor=spot.senior, spot_check=spot, verdict="pass")
    batch.review.refresh_from_db()
    assert batch.review.state == "approved"

    # 4. Export through the API: nnU-Net layout, checksums, institution-level split, files read back.
    api.force_authenticate(cast.manager)
    with django_capture_on_commit_callbacks(execute=True):
        export = api.post(f"/api/campaigns/{campaign.pk}/exports/").json()
    export = api.get(f"/api/exports/{export['id']}/").json()
    assert export["status"] == "done", export["error"]
    root = media_path(export["path"])
    manifest = json.loads((root / "manifest.json").read_text())
    dataset = json.loads((root / "dataset.json").read_text())
    assert dataset["numTraining"] == sum(c["split"] != "test" for c in manifest["cases"])
    assert {c["institution"]: c["split"] for c in manifest["cases"]} == export["summary"]["institutions"]
    assert len({c["split"] for c in manifest["cases"] if c["institution"] == "north"}) == 1
    assert {c["split"] for c in manifest["cases"]} == {"train", "validation", "test"}
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest
    by_pk = {s.pk: s for s, _ in scans}
    for case in manifest["cases"]:
        scan = by_pk[case["scan_id"]]
        assert np.array_equal(read_nifti(root / case["image"])[0], scan_volume(scan))
        assert np.array_equal(read_nifti(root / case["label"])[0], drawn[scan.pk])
        segments = {int(k): v for k, v in case["seg_segments"].items()}
        assert np.array_equal(read_seg_labels(root / case["seg"], scan, segments), drawn[scan.pk])
    north = next(c for c in manifest["cases"] if c["scan_id"] == first.pk)
    assert north["qc_rounds"] == 2 and north["revision_number"] == 2

    # 5. A tiny training run on that export: a new version, promoted or not, with the reason.
    with django_capture_on_commit_callbacks(execute=True):
        run = api.post(
            f"/api/campaigns/{campaign.pk}/training-runs/",
            {
                "export_id": export["id"],
                "architecture": "unet2d-tiny",
                "params": {"epochs": 2, "slices_per_case": 4, "batch_size": 4, "max_minutes": 2},
            },
            format="json",
        ).json()
    run = api.get(f"/api/training-runs/{run['id']}/").json()
    assert run["status"] == "done", run["error"]
    assert run["decision"].startswith(("promoted:", "not promoted:")) and run["metrics"]["test_cases"] >= 1
    version = ModelVersion.objects.get(pk=run["model_version"]["id"])
    assert version.trained_on_id == export["id"] and version.is_active is run["promoted"]
    if not run["promoted"]:
        # A tiny model rarely beats the baseline; the data manager may still put it to work.
        assert api.post(f"/api/model-versions/{version.pk}/activate/").status_code == 200

    # 6. The next scan is pre-segmented by the new model version.
    ((new_scan, _),) = import_scans(cast, tmp_path, "west", 1, first_seed=99, slices=12, size=48)
    with django_capture_on_commit_callbacks(execute=True):
        batch_build(actor=cast.manager, campaign=campaign, annotator=cast.annotator2, scan_ids=[new_scan.pk])
    rev0 = Revision.objects.get(pk=head_id(campaign, new_scan))
    assert (rev0.number, rev0.source, rev0.model_version_id, rev0.model_label) == (
        0,
        "model",
        version.pk,
        version.label,
    )
    report = api.get(f"/api/campaigns/{campaign.pk}/scans/{new_scan.pk}/report/").json()
    assert report["labels"]["author"] == version.label and report["lung_volume_ml"] > 0

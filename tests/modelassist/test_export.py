"""Dataset export: nnU-Net layout, DICOM SEG, manifest, institution-level splits, atomic publish,
streamed download. The QC workflow runs through the real qc services.

Scans of several institutions and batches driven to approval come from curated.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.modelassist.curated import (
    approve,
    eager_celery,
    import_scans,
    institution,
    label_volume,
    run_export,
)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def eager():
    with eager_celery() as app:
        yield app


def export_dir(export) -> Path:
    from modelassist.selectors import media_path

    return media_path(export.path)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def four_hospitals(cast, tmp_path):
    """Scans of four institutions (3, 1, 1, 1 scans), approved: [(scan, labels)]."""
    cases = []
    for slug, n, seed in [("alpha", 3, 0), ("bravo", 1, 10), ("charlie", 1, 20), ("delta", 1, 30)]:
        cases += [
            (scan, label_volume(truth, scan.shape))
            for scan, truth in import_scans(cast, tmp_path, slug, n, first_seed=seed)
        ]
    cases[-1] = (cases[-1][0], np.zeros(cases[-1][0].shape, dtype=np.uint8))  # a scan with no lesion
    approve(cast, cases)
    return cases


# ----------------------------------------------------------------------------- layout and content


def test_export_writes_nnunet_layout_seg_and_manifest_that_read_back_to_the_same_voxels(
    cast, four_hospitals, api, eager, django_capture_on_commit_callbacks
):
    from modelassist.selectors import media_path, scan_volume
    from modelassist.services.export_files import nifti_affine, read_nifti, read_seg_labels
    from qc.models import Check

    api.force_authenticate(cast.manager)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/campaigns/{cast.campaign.pk}/exports/")
    assert response.status_code == 202
    export = api.get(f"/api/exports/{response.json()['id']}/").json()
    assert export["status"] == "done" and export["version"] == 1 and export["progress"] == 1.0
    root = media_path(export["path"])
    assert root.name == "v1" and root.parent.name == "covid19"

    dataset = json.loads((root / "dataset.json").read_text())
    manifest = json.loads((root / "manifest.json").read_text())
    assert dataset["channel_names"] == {"0": "CT"} and dataset["file_ending"] == ".nii.gz"
    assert dataset["labels"] == {
        "background": 0,
        "ground-glass opacity": 1,
        "consolidation": 2,
        "other opacity": 3,
    }
    cases = manifest["cases"]
    assert (
        dataset["numTraining"]
        == sum(c["split"] != "test" for c in cases)
        == len(list((root / "imagesTr").iterdir()))
    )
    assert manifest["content_sha256"] == export["content_sha256"]
    assert "imagesTr" in manifest["split"]["validation_choice"]

    # Institution-level split: every split used, no institution in two.
    by_inst: dict[str, set] = {}
    for c in cases:
        by_inst.setdefault(c["institution"], set()).add(c["split"])
    assert all(len(s) == 1 for s in by_inst.values()) and {c["split"] for c in cases} == {
        "train",
        "validation",
        "test",
    }
    folds = json.loads((root / "splits_final.json").read_text())
    assert sorted(folds[0]["train"] + folds[0]["val"]) == sorted(
        c["case"] for c in cases if c["split"] != "test"
    )

    # Every file is listed with its checksum, and reads back to the stored voxels.
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    assert all(sha(root / rel) == digest for rel, digest in manifest["files"].items())
    labels_by_scan = {s.pk: (s, lab) for s, lab in four_hospitals}
    for c in cases:
        scan, labels = labels_by_scan[c["scan_id"]]
        side = "Tr" if c["split"] != "test" else "Ts"
        assert (
            c["image"] == f"images{side}/{c['case']}_0000.nii.gz"
            and c["label"] == f"labels{side}/{c['case']}.nii.gz"
        )
        image, affine = read_nifti(root / c["image"])
        stored, _ = read_nifti(root / c["label"])
        assert np.array_equal(image, scan_volume(scan)) and image.dtype == np.int16
        assert np.array_equal(stored, labels) and np.allclose(affine, nifti_affine(scan))
        assert c["label_sha256"] == hashlib.sha256(labels.tobytes()).hexdigest()
        assert c["image_sha256"] == scan.volume_sha256
        checks = Check.objects.filter(annotation__scan=scan)
        assert c["annotator"] == "annotator" and c["qc_rounds"] == 1
        assert sorted(x["username"] for x in c["checkers"]) == sorted(
            checks.values_list("checker__username", flat=True)
        )
        assert c["spot_checked"] == (c["senior"] == "senior")
        if labels.any():
            assert np.array_equal(
                read_seg_labels(root / c["seg"], scan, {int(k): v for k, v in c["seg_segments"].items()}),
                labels,
            )
        else:
            assert c["seg"] is None and "at least one segment" in c["seg_note"]
    assert sum(c["spot_checked"] for c in cases) == 2  # 30 % of 6, rounded up


def test_nifti_affine_puts_voxels_where_the_dicom_geometry_does(cast, tmp_path):
    from core.models import Instance
    from modelassist.services.export_files import nifti_affine

    ((scan, _),) = import_scans(cast, tmp_path, "alpha", 1, first_seed=3)
    import pydicom

    from modelassist.selectors import media_path

    affine = nifti_affine(scan)
    for index in (0, scan.slices - 1):
        inst = Instance.objects.get(scan=scan, index=index)
        ds = pydicom.dcmread(media_path(scan.storage_dir) / inst.file_name, stop_before_pixels=True)
        col, row = 5, 7  # voxel (x=5, y=7) of this slice
        r, c = (
            np.array(ds.ImageOrientationPatient[:3], float),
            np.array(ds.ImageOrientationPatient[3:], float),
        )
        dy, dx = (float(v) for v in ds.PixelSpacing)
        lps = np.array(ds.ImagePositionPatient, float) + col * dx * r + row * dy * c
        ras = affine @ np.array([col, row, index, 1.0])
        assert np.allclose(ras[:3], lps * [-1, -1, 1], atol=1e-3)


def test_same_content_same_hash_and_cases_never_change_split(cast, four_hospitals, tmp_path):
    first = run_export(cast)
    again = run_export(cast)
    assert (first.version, again.version) == (1, 2) and first.content_sha256 == again.content_sha256
    before = {
        c["scan_id"]: (c["case"], c["split"])
        for c in json.loads((export_dir(first) / "manifest.json").read_text())["cases"]
    }

    # The campaign grows: a new institution and a new scan of a known one.
    more = [(s, label_volume(t, s.shape)) for s, t in import_scans(cast, tmp_path, "echo", 2, first_seed=40)]
    more += [
        (s, label_volume(t, s.shape)) for s, t in import_scans(cast, tmp_path, "alpha", 1, first_seed=50)
    ]
    approve(cast, more)
    grown = run_export(cast)

    after = json.loads((export_dir(grown) / "manifest.json").read_text())["cases"]
    assert grown.version == 3 and grown.content_sha256 != first.content_sha256
    assert {c["scan_id"]: (c["case"], c["split"]) for c in after if c["scan_id"] in before} == before
    alpha_split = {c["split"] for c in after if c["institution"] == "alpha"}
    assert len(alpha_split) == 1 and len({c["split"] for c in after if c["institution"] == "echo"}) == 1
    assert (export_dir(first) / "manifest.json").exists()  # older versions stay as they were


def test_split_assignment_is_stable_and_close_to_70_15_15(cast):
    from core.models import Campaign
    from modelassist.models import SplitPlan
    from modelassist.services import splits

    def plan_for(slug, seed, sizes):
        from tests.qc.conftest import make_scans

        campaign = Campaign.objects.create(
            slug=slug, name=slug, institution=cast.institution, label_schema=cast.campaign.label_schema
        )
        SplitPlan.objects.create(campaign=campaign, seed=seed)
        scans = []
        for i, n in enumerate(sizes):
            inst = institution(f"h{i:02d}")
            for scan in make_scans(campaign, n):
                scan.study.institution = inst
                scan.study.save()
                scans.append(scan)
        cases = splits.assign_cases(campaign, scans, export=None)
        return {s.study.institution.slug: cases[s.pk].split for s in scans}, cases

    sizes = [12, 9, 8, 7, 6, 5, 5, 4, 3, 3, 2, 2]
    a, cases = plan_for("plan-a", 1234, sizes)
    b, _ = plan_for("plan-b", 1234, sizes)
    assert a == b  # the stored seed decides
    counts = {s: sum(1 for c in cases.values() if c.split == s) for s in ("train", "validation", "test")}
    shares = {s: n / sum(counts.values()) for s, n in counts.items()}
    assert shares["train"] == pytest.approx(0.70, abs=0.08)
    assert shares["validation"] == pytest.approx(0.15, abs=0.08) and shares["test"] == pytest.approx(
        0.15, abs=0.08
    )


def test_a_failed_export_leaves_nothing_and_uses_no_version(cast, four_hospitals, monkeypatch):
    from modelassist.services import export_files
    from modelassist.services.export import exports_root

    real = export_files.write_seg
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(export_files, "write_seg", flaky)
    failed = run_export(cast)

    assert failed.status == "failed" and "disk full" in failed.error and failed.version is None
    assert not any(exports_root(cast.campaign).iterdir())
    monkeypatch.setattr(export_files, "write_seg", real)
    assert run_export(cast).version == 1


def test_download_streams_one_zip_of_the_published_export(cast, four_hospitals, api):
    export = run_export(cast)
    api.force_authenticate(cast.manager)

    response = api.get(f"/api/exports/{export.pk}/download/")

    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == 'attachment; filename="covid19-v1.zip"'
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    root = export_dir(export)
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert set(archive.namelist()) == {f"covid19-v1/{f}" for f in files}
    assert archive.read("covid19-v1/dataset.json") == (root / "dataset.json").read_bytes()
    assert archive.testzip() is None


def test_only_data_managers_export_and_only_curated_data(cast, api, import_phantoms):
    api.force_authenticate(cast.manager)
    nothing = api.post(f"/api/campaigns/{cast.campaign.pk}/exports/")
    assert nothing.status_code == 400 and nothing.json()["code"] == "nothing_to_export"
    api.force_authenticate(cast.annotator)
    assert api.post(f"/api/campaigns/{cast.campaign.pk}/exports/").status_code == 403
    api.force_authenticate(cast.outsider)
    assert api.post(f"/api/campaigns/{cast.campaign.pk}/exports/").status_code == 404


def test_management_command_exports_a_campaign(cast, four_hospitals):
    from django.core.management import call_command

    out = io.StringIO()
    call_command("export_dataset", campaign="covid19", stdout=out)

    assert "v1" in out.getvalue() and "content sha256" in out.getvalue()


def test_exported_seg_passes_dciodvfy_without_errors(cast, four_hospitals):
    binary = shutil.which("dciodvfy")
    if binary is None:
        pytest.skip("dciodvfy not found: apt-get install dicom3tools (make dicom-peers installs it)")
    export = run_export(cast)
    segs = sorted((export_dir(export) / "seg").glob("*.dcm"))
    assert segs
    for seg in segs:
        result = subprocess.run([binary, str(seg)], capture_output=True, text=True, timeout=60)
        output = result.stdout + result.stderr
        errors = [line for line in output.splitlines() if line.startswith("Error")]
        assert not errors, output

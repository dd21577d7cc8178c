"""Pre-segmentation as Celery tasks, model versions, and the quantification report API."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from django.db import IntegrityError, transaction

from tests.conftest import make_series, truth_of
from tests.modelassist.curated import eager_celery

SMALL = {"slices": 12, "size": 64}


@pytest.fixture
def eager():
    with eager_celery() as app:
        yield app


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def assign_batch(cast, scans, django_capture_on_commit_callbacks):
    """Build a batch of the scans for the annotator; its on-commit pre-segmentation runs."""
    from core.services.batches import batch_build

    with django_capture_on_commit_callbacks(execute=True):
        return batch_build(
            actor=cast.manager,
            campaign=cast.campaign,
            scan_ids=[s.pk for s in scans],
            annotator=cast.annotator,
        )


def revisions_of(campaign, scan):
    from annotation.models import Revision

    return list(
        Revision.objects.filter(annotation__campaign=campaign, annotation__scan=scan).order_by("number")
    )


def rows_by_scan(batch):
    from modelassist.models import PresegScan

    return {r.scan_id: r for r in PresegScan.objects.filter(run__batch=batch)}


def tiny_model_file(path: Path, architecture: str = "unet2d-tiny") -> Path:
    """A real (barely trained) model file, as the training job writes them."""
    from modelassist import network
    from tests.modelassist.synthetic import make_chest

    chest = make_chest((12, 48, 48), (7.0, 7.0, 12.0), seed=3, n_vessels=0)
    model, _ = network.train_model(
        [(chest.hu, chest.lesions)],
        [],
        epochs=1,
        batch_size=4,
        slices_per_case=4,
        architecture=architecture,
        device=torch.device("cpu"),
    )
    network.save_model(model, path, {"note": "test"})
    return path


# ----------------------------------------------------------------------------- the pipeline


def test_assigning_a_batch_presegments_every_scan_as_revision_zero(
    cast, import_phantoms, eager, api, django_capture_on_commit_callbacks
):
    scans = import_phantoms(3, **SMALL)

    batch = assign_batch(cast, scans, django_capture_on_commit_callbacks)

    for scan in scans:
        (rev,) = revisions_of(cast.campaign, scan)
        assert (rev.number, rev.source, rev.model_label, rev.author_id) == (0, "model", "baseline", None)
    api.force_authenticate(cast.manager)
    progress = api.get(f"/api/batches/{batch.pk}/presegmentation/").json()
    assert progress["status"] == "done" and progress["counts"]["done"] == 3 and progress["progress"] == 1.0
    assert all(r["seconds"] is not None and r["model_label"] == "baseline" for r in progress["scans"])
    api.force_authenticate(cast.annotator)  # the annotator sees their batch's progress too
    assert api.get(f"/api/batches/{batch.pk}/presegmentation/").status_code == 200
    api.force_authenticate(cast.outsider)
    assert api.get(f"/api/batches/{batch.pk}/presegmentation/").status_code == 404


def test_running_the_tasks_twice_changes_nothing(
    cast, import_phantoms, eager, django_capture_on_commit_callbacks
):
    from modelassist.tasks import presegment_batch, presegment_scan

    scans = import_phantoms(2, **SMALL)
    batch = assign_batch(cast, scans, django_capture_on_commit_callbacks)
    first = {s.pk: [r.pk for r in revisions_of(cast.campaign, s)] for s in scans}

    again = presegment_batch.delay(batch.pk).get()
    presegment_scan.delay(cast.campaign.pk, scans[0].pk, batch.pk).get()

    assert again["queued"] == []  # nothing left to do
    assert {s.pk: [r.pk for r in revisions_of(cast.campaign, s)] for s in scans} == first
    assert {r.status for r in rows_by_scan(batch).values()} == {"done"}


def test_a_failing_scan_is_reported_and_does_not_stop_the_others(
    cast, import_phantoms, eager, api, settings, django_capture_on_commit_callbacks
):
    from modelassist.selectors import scan_volume_path
    from modelassist.tasks import presegment_batch

    scans = import_phantoms(3, **SMALL)
    broken = scans[1]
    hidden = scan_volume_path(broken).with_suffix(".away")
    scan_volume_path(broken).rename(hidden)

    batch = assign_batch(cast, scans, django_capture_on_commit_callbacks)

    rows = rows_by_scan(batch)
    assert rows[broken.pk].status == "failed" and "missing" in rows[broken.pk].error
    assert rows[broken.pk].seconds is not None
    assert [rows[s.pk].status for s in (scans[0], scans[2])] == ["done", "done"]
    api.force_authenticate(cast.manager)
    progress = api.get(f"/api/batches/{batch.pk}/presegmentation/").json()
    assert progress["status"] == "done_with_failures" and progress["counts"]["failed"] == 1

    # The data manager fixes the file and re-runs: only the failed scan is retried.
    hidden.rename(scan_volume_path(broken))
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/batches/{batch.pk}/presegmentation/")
    assert response.status_code == 202
    assert rows_by_scan(batch)[broken.pk].status == "done"
    assert presegment_batch.delay(batch.pk).get()["queued"] == []
    api.force_authenticate(cast.annotator)
    assert api.post(f"/api/batches/{batch.pk}/presegmentation/").status_code == 403


def test_a_scan_whose_task_hits_the_time_limit_is_failed_with_a_reason(cast, import_phantoms, monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    from core.services.batches import batch_build
    from modelassist.models import PresegStatus
    from modelassist.services import preseg

    (scan,) = import_phantoms(1, **SMALL)
    batch = batch_build(actor=cast.manager, campaign=cast.campaign, scan_ids=[scan.pk])
    preseg.preseg_queue_batch(batch.pk)

    def too_slow(*args):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(preseg, "segment_scan", too_slow)
    row = preseg.presegment_scan_run(cast.campaign.pk, scan.pk, batch.pk)

    assert row.status == PresegStatus.FAILED and "time limit" in row.error
    assert revisions_of(cast.campaign, scan) == []


def test_people_s_work_is_never_overwritten_whatever_model_is_active(
    cast, import_phantoms, eager, tmp_path, django_capture_on_commit_callbacks
):
    from annotation.services import revision_save
    from core.services.batches import batch_build
    from modelassist.services.model_versions import model_version_upload
    from modelassist.tasks import presegment_batch, presegment_scan

    scans = import_phantoms(2, **SMALL)
    batch = batch_build(
        actor=cast.manager, campaign=cast.campaign, scan_ids=[s.pk for s in scans], annotator=cast.annotator
    )  # memory broker: nothing runs yet
    mine = revision_save(
        actor=cast.annotator,
        campaign=cast.campaign,
        scan=scans[0],
        parent_id=None,
        full=np.ones(scans[0].shape, dtype=np.uint8),
    )

    presegment_batch.delay(batch.pk).get()
    rows = rows_by_scan(batch)
    assert rows[scans[0].pk].status == "skipped" and "never overwrites" in rows[scans[0].pk].error
    assert [r.pk for r in revisions_of(cast.campaign, scans[0])] == [mine.pk]
    baseline_rev = revisions_of(cast.campaign, scans[1])[0]

    # A new model becomes active; re-running it leaves every existing revision alone.
    with open(tiny_model_file(tmp_path / "m.pt"), "rb") as f:
        model_version_upload(actor=cast.manager, campaign=cast.campaign, name="new", upload=f, activate=True)
    presegment_scan.delay(cast.campaign.pk, scans[1].pk, batch.pk).get()
    from modelassist.models import PresegScan

    PresegScan.objects.filter(run__batch=batch).update(status="failed")  # as if both had failed
    presegment_batch.delay(batch.pk).get()

    assert [r.pk for r in revisions_of(cast.campaign, scans[0])] == [mine.pk]
    assert [r.pk for r in revisions_of(cast.campaign, scans[1])] == [baseline_rev.pk]
    rows = rows_by_scan(batch)
    # People's labels: skipped. The row's own revision 0 (an attempt that saved it and lost its
    # worker before it recorded the end): done with that revision, still by the baseline.
    assert rows[scans[0].pk].status == "skipped" and rows[scans[0].pk].revision_id is None
    assert rows[scans[1].pk].status == "done" and rows[scans[1].pk].revision_id == baseline_rev.pk
    assert rows[scans[1].pk].model_label == "baseline" and rows[scans[1].pk].model_version_id is None


# ----------------------------------------------------------------------------- model versions


def test_an_uploaded_active_model_presegments_and_authors_revision_zero(
    cast, import_phantoms, eager, api, tmp_path, django_capture_on_commit_callbacks
):
    from annotation.services import revision_labels
    from core.models import AuditEvent

    path = tiny_model_file(tmp_path / "weights.pt")
    api.force_authenticate(cast.manager)
    with open(path, "rb") as f:
        response = api.post(
            f"/api/campaigns/{cast.campaign.pk}/model-versions/",
            {"name": "tiny-1", "file": f, "activate": "true"},
            format="multipart",
        )
    assert response.status_code == 201, response.content
    version = response.json()
    assert version["is_active"] and version["architecture"] == "unet2d-tiny" and len(version["sha256"]) == 64

    scans = import_phantoms(1, **SMALL)
    assign_batch(cast, scans, django_capture_on_commit_callbacks)

    (rev,) = revisions_of(cast.campaign, scans[0])
    assert rev.model_label == version["label"] and rev.model_version_id == version["id"]
    assert revision_labels(rev).shape == scans[0].shape
    listing = api.get(f"/api/campaigns/{cast.campaign.pk}/model-versions/").json()
    assert listing["active"]["id"] == version["id"]
    assert AuditEvent.objects.filter(action="model_version_activate", to_state=version["label"]).exists()


def test_an_upload_that_is_not_a_model_is_refused_and_not_kept(cast, api, settings):
    api.force_authenticate(cast.manager)
    junk = io.BytesIO(b"not a torch file at all")
    junk.name = "weights.pt"

    response = api.post(
        f"/api/campaigns/{cast.campaign.pk}/model-versions/",
        {"name": "junk", "file": junk},
        format="multipart",
    )

    assert response.status_code == 400 and response.json()["code"] == "bad_model_file"
    models_dir = Path(settings.MEDIA_ROOT) / "models"
    assert not models_dir.exists() or not any(p.is_file() for p in models_dir.rglob("*"))


def test_one_active_version_per_campaign_and_only_managers_switch(cast, api, tmp_path):
    from modelassist.models import ModelVersion
    from modelassist.services.model_versions import model_version_upload

    path = tiny_model_file(tmp_path / "w.pt")
    versions = []
    for name in ("a", "b"):
        with open(path, "rb") as f:
            versions.append(
                model_version_upload(actor=cast.manager, campaign=cast.campaign, name=name, upload=f)
            )
    api.force_authenticate(cast.manager)

    for v in versions:
        assert api.post(f"/api/model-versions/{v.pk}/activate/").status_code == 200
    assert list(ModelVersion.objects.filter(is_active=True).values_list("name", flat=True)) == ["b"]
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=versions[0].pk).update(is_active=True)

    api.force_authenticate(cast.annotator)
    assert api.post(f"/api/model-versions/{versions[0].pk}/activate/").status_code == 403
    api.force_authenticate(cast.outsider)
    assert api.post(f"/api/model-versions/{versions[0].pk}/activate/").status_code == 404
    api.force_authenticate(cast.manager)
    assert (
        api.post(f"/api/campaigns/{cast.campaign.pk}/model-versions/deactivate/").json()["name"] == "baseline"
    )
    assert not ModelVersion.objects.filter(is_active=True).exists()


# ----------------------------------------------------------------------------- reports


def write_lung_cache(scan, lungs):
    from modelassist.services.quantification import lung_mask_store

    lung_mask_store(scan, lungs)


def test_report_numbers_match_a_phantom_with_known_volumes(cast, import_phantoms, tmp_path, api):
    from annotation.services import model_revision_save
    from demo.phantom import load_ground_truth

    (scan,) = import_phantoms(1, **SMALL)
    truth = load_ground_truth(next((tmp_path / "truth").glob("*.npz")))
    model_revision_save(
        campaign=cast.campaign, scan=scan, volume=truth.lesions, model_label="truth", model_version_id=None
    )
    write_lung_cache(scan, truth.lungs)  # the lung mask is known exactly, so are the numbers
    api.force_authenticate(cast.manager)

    report = api.get(f"/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/report/").json()

    voxel_ml = float(np.prod(truth.spacing)) / 1000
    lung = (truth.lungs > 0) | (truth.lesions > 0)
    assert report["voxel_volume_ml"] == pytest.approx(voxel_ml)
    assert report["lung_volume_ml"] == pytest.approx(np.count_nonzero(lung) * voxel_ml)
    assert report["lesion_volume_ml"] == pytest.approx(np.count_nonzero(truth.lesions) * voxel_ml)
    assert report["percent_of_lung_involved"] == pytest.approx(
        100 * np.count_nonzero(truth.lesions) / np.count_nonzero(lung)
    )
    by_class = report["lesion_volume_by_class_ml"]
    assert by_class["ground-glass opacity"] == pytest.approx(np.count_nonzero(truth.lesions == 1) * voxel_ml)
    assert by_class["consolidation"] == pytest.approx(np.count_nonzero(truth.lesions == 2) * voxel_ml)
    assert report["region_kind"] == "zone" and len(report["regions"]) == 6
    assert "not anatomical lobes" in report["region_note"]
    assert sum(r["lesion_volume_ml"] for r in report["regions"]) == pytest.approx(report["lesion_volume_ml"])
    assert report["severity_score_total"] == sum(r["severity_score"] for r in report["regions"])
    assert report["labels"]["revision_id"] and report["lungs"]["from_cache"] is True


def test_report_segments_the_lungs_once_and_caches_them_by_volume(cast, import_phantoms, tmp_path, api):
    from annotation.services import model_revision_save
    from demo.phantom import load_ground_truth
    from modelassist.services.quantification import lung_cache_path

    (scan,) = import_phantoms(1, slices=16, size=96)
    truth = load_ground_truth(next((tmp_path / "truth").glob("*.npz")))
    model_revision_save(
        campaign=cast.campaign, scan=scan, volume=truth.lesions, model_label="truth", model_version_id=None
    )
    api.force_authenticate(cast.manager)
    url = f"/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/report/"

    first = api.get(url).json()
    second = api.get(url).json()

    assert (first["lungs"]["from_cache"], second["lungs"]["from_cache"]) == (False, True)
    assert scan.volume_sha256[:24] in lung_cache_path(scan).name and lung_cache_path(scan).exists()
    true_ml = np.count_nonzero((truth.lungs > 0) | (truth.lesions > 0)) * float(np.prod(truth.spacing)) / 1000
    assert first["lung_volume_ml"] == pytest.approx(true_ml, rel=0.2)


def raw_scan(campaign, hu: np.ndarray, *, patient: str = "RAW-1"):
    """A scan row with a volume file written directly (no DICOM): geometry is the identity."""
    import hashlib

    from core.models import CampaignScan, PatientPseudonym, Scan, Study
    from modelassist.selectors import scan_volume_path

    p = PatientPseudonym.objects.create(
        institution=campaign.institution, original_id_hash=patient, pseudonym=patient, date_offset_days=0
    )
    study = Study.objects.create(institution=campaign.institution, patient=p, study_uid=f"2.25.1{p.pk}")
    scan = Scan.objects.create(
        study=study,
        series_uid=f"2.25.2{p.pk}",
        rows=hu.shape[1],
        columns=hu.shape[2],
        slices=hu.shape[0],
        spacing=[1.0, 1.0, 1.0],
        origin=[0, 0, 0],
        direction=[1, 0, 0, 0, 1, 0, 0, 0, 1],
        storage_dir=f"scans/raw-{p.pk}",
        volume_sha256=hashlib.sha256(hu.tobytes()).hexdigest(),
    )
    CampaignScan.objects.create(campaign=campaign, scan=scan)
    scan_volume_path(scan).parent.mkdir(parents=True)
    np.save(scan_volume_path(scan), hu)
    return scan


def box_lungs() -> np.ndarray:
    """Two 30-slice box lungs of 10 × 10 voxels: each third of a lung (a zone) is 1000 voxels."""
    lungs = np.zeros((30, 10, 30), dtype=np.uint8)
    lungs[:, :, 0:10] = 1
    lungs[:, :, 20:30] = 2
    return lungs


def lesions_per_zone(lungs: np.ndarray, counts: dict[tuple[int, int], int]) -> np.ndarray:
    """counts[(lung, third)] lesion voxels in that third (0 = slices 0-9) of that lung."""
    labels = np.zeros(lungs.shape, dtype=np.uint8)
    for (side, third), n in counts.items():
        zone = np.zeros(lungs.shape, dtype=bool)
        zone[third * 10 : (third + 1) * 10] = lungs[third * 10 : (third + 1) * 10] == side
        labels.reshape(-1)[np.flatnonzero(zone)[:n]] = 1
    return labels


def test_severity_band_edges_through_the_report_api(cast, api):
    from annotation.services import model_revision_save, revision_save
    from core.services.batches import batch_build

    lungs = box_lungs()
    scan = raw_scan(cast.campaign, np.where(lungs > 0, -850, 40).astype(np.int16))
    write_lung_cache(scan, lungs)
    # 0, 4.9, 5, 25.1, 75 and 75.1 % of the six zones: bands 0, 1, 2, 3, 4, 5.
    edges = lesions_per_zone(lungs, {(1, 1): 49, (1, 2): 50, (2, 0): 251, (2, 1): 750, (2, 2): 751})
    first = model_revision_save(
        campaign=cast.campaign, scan=scan, volume=edges, model_label="edges", model_version_id=None
    )
    batch_build(actor=cast.manager, campaign=cast.campaign, scan_ids=[scan.pk], annotator=cast.annotator)
    # 25, 50, 50.1, 100, 0.5 and 0.1 %: bands 2, 3, 4, 5, 1, 1.
    upper = lesions_per_zone(
        lungs, {(1, 0): 250, (1, 1): 500, (1, 2): 501, (2, 0): 1000, (2, 1): 5, (2, 2): 1}
    )
    revision_save(actor=cast.annotator, campaign=cast.campaign, scan=scan, parent_id=first.pk, full=upper)
    api.force_authenticate(cast.manager)
    url = f"/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/report/"

    old = api.get(url, {"revision": first.pk}).json()
    head = api.get(url).json()

    # Slice 0 is the most caudal here (slice normal +z, towards the head): slices 0-9 are the lower third.
    def scores(report):
        return {r["name"]: r["severity_score"] for r in report["regions"]}

    assert scores(old) == {
        "upper third of the right lung": 2,
        "middle third of the right lung": 1,
        "lower third of the right lung": 0,
        "upper third of the left lung": 5,
        "middle third of the left lung": 4,
        "lower third of the left lung": 3,
    }
    assert old["severity_score_total"] == 15 and old["severity_score_max"] == 30
    assert old["labels"]["selected_by"] == "revision" and old["labels"]["revision_number"] == 0
    assert sorted(scores(head).values()) == [1, 1, 2, 3, 4, 5] and head["severity_score_total"] == 16
    assert [r["percent_involved"] for r in head["regions"] if r["severity_score"] == 4] == [
        pytest.approx(50.1)
    ]
    assert head["labels"]["selected_by"] == "head" and head["labels"]["author"] == "annotator"


def test_report_answers_404_without_labels_or_access(cast, import_phantoms, api):
    (scan,) = import_phantoms(1, slices=8, size=32)
    url = f"/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/report/"
    api.force_authenticate(cast.manager)
    assert api.get(url).json()["code"] == "no_revision"
    assert api.get(url, {"revision": "curated"}).status_code == 404
    api.force_authenticate(cast.outsider)
    assert api.get(url).status_code == 404


def test_patient_reports_line_up_serial_scans_by_study_date(cast, tmp_path, api):
    from annotation.services import model_revision_save
    from core.models import Scan
    from demo.phantom import load_ground_truth
    from imaging.ingest.service import ingest_path

    folder = tmp_path / "serial"
    dates = ["20200324", "20200310"]  # imported out of order on purpose
    truths = {}
    for i, date in enumerate(dates):
        series = make_series(
            folder, slices=12, size=64, seed=10 + i, patient="P-SERIAL", anatomy_seed=7, study_date=date
        )
        truths[date] = load_ground_truth(truth_of(series))
    report = ingest_path(folder, institution=cast.institution, campaign_id=cast.campaign.pk)
    scans = list(Scan.objects.filter(pk__in=report.scans_created).select_related("study__patient"))
    assert len(scans) == 2 and len({s.study.patient.pseudonym for s in scans}) == 1
    # One date shift per patient keeps the order: the earlier study is the earlier original date.
    for scan, date in zip(sorted(scans, key=lambda s: s.study.study_date), sorted(dates), strict=True):
        truth = truths[date]
        model_revision_save(
            campaign=cast.campaign,
            scan=scan,
            volume=truth.lesions,
            model_label="truth",
            model_version_id=None,
        )
        write_lung_cache(scan, truth.lungs)
    pseudonym = scans[0].study.patient.pseudonym
    api.force_authenticate(cast.manager)

    out = api.get(f"/api/patients/{pseudonym}/reports/", {"campaign": cast.campaign.pk}).json()

    timeline = out["percent_of_lung_involved_over_time"]
    assert [t["study_date"] for t in timeline] == sorted(t["study_date"] for t in timeline)
    for point, entry in zip(timeline, out["scans"], strict=True):
        assert point["percent_of_lung_involved"] == entry["report"]["percent_of_lung_involved"] > 0
    assert api.get(f"/api/patients/{pseudonym}/reports/").status_code == 400
    api.force_authenticate(cast.outsider)
    assert api.get(f"/api/patients/{pseudonym}/reports/", {"campaign": cast.campaign.pk}).status_code == 404


# ----------------------------------------------------------------------------- a real worker
# Its broker, routes and queues come from tests/conftest.py (celery_broker, celery_config).


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_presegments_a_batch_when_it_is_assigned(cast, import_phantoms, celery_worker):
    from core.services.batches import batch_build
    from modelassist.models import PRESEG_FINAL, PresegScan

    scans = import_phantoms(2, slices=10, size=48)

    batch = batch_build(
        actor=cast.manager, campaign=cast.campaign, scan_ids=[s.pk for s in scans], annotator=cast.annotator
    )  # commits, then sends presegment_batch by name

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = list(PresegScan.objects.filter(run__batch=batch))
        if len(rows) == 2 and all(r.status in PRESEG_FINAL for r in rows):
            break
        time.sleep(0.2)
    assert sorted(r.status for r in rows) == ["done", "done"]
    for scan in scans:
        assert [r.model_label for r in revisions_of(cast.campaign, scan)] == ["baseline"]

"""A real Orthanc (with its DICOMweb plugin) as the hospital's PACS: configure it, search it,
pull studies from it, and send curated labels back as DICOM SEG (STOW-RS and C-STORE)."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import requests
from django.utils import timezone

from core.models import AuditEvent, Scan
from imaging.ingest.service import ingest_path
from imaging.models import ImportJob
from pacs import pulls, services
from pacs.models import PacsSend, PulledStudy, RemotePacs, SeriesOrigin
from pacs.tasks import pull_run
from tests.conftest import make_series
from tests.pacs.conftest import need, orthanc_remote

pytestmark = pytest.mark.django_db(transaction=True)


def phantoms(tmp_path: Path, n: int, slices: int = 8) -> list[Path]:
    return [
        make_series(tmp_path / "pacs", slices=slices, size=64, seed=20 + i, patient=f"MRN-{i}")
        for i in range(n)
    ]


def original_uids(folder: Path) -> tuple[str, str, list[str]]:
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.rglob("*.dcm"))]
    return datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID, [d.SOPInstanceUID for d in datasets]


@pytest.fixture
def remote(cast, orthanc):
    return orthanc_remote(cast.institution, orthanc)


def run_pull(job_id: int) -> ImportJob:
    pull_run.apply(args=[job_id]).get()
    return ImportJob.objects.get(pk=job_id)


def test_a_data_manager_configures_a_pacs_and_the_secret_never_comes_back(api, cast, orthanc):
    api.force_authenticate(cast.manager)

    created = api.post(
        "/api/pacs/remotes/",
        {
            "name": "Radiology PACS",
            "dicomweb_url": orthanc.dicomweb_url,
            "auth_type": "basic",
            "username": orthanc.auth[0],
            "secret": orthanc.auth[1],
            "send_method": "stow",
        },
        format="json",
    )
    echo = api.post(f"/api/pacs/remotes/{created.json()['id']}/echo/")
    missing_secret = api.post(
        "/api/pacs/remotes/",
        {"name": "Bad", "dicomweb_url": orthanc.dicomweb_url, "auth_type": "basic", "username": "x"},
        format="json",
    )

    assert created.status_code == 201, created.json()
    assert "secret" not in created.json() and created.json()["has_secret"] is True
    assert echo.json() == {"dicomweb": {"ok": True}}
    assert missing_secret.status_code == 400 and "password or token" in missing_secret.json()["detail"]
    assert AuditEvent.objects.filter(action="pacs_remote_create").count() == 1


def test_other_institutions_and_non_managers_cannot_use_the_pacs(api, cast, remote):
    api.force_authenticate(cast.outsider)
    assert api.get(f"/api/pacs/remotes/{remote.pk}/studies/").status_code == 404
    api.force_authenticate(cast.annotator)
    assert api.get("/api/pacs/remotes/").json() == []
    assert (
        api.post(f"/api/pacs/remotes/{remote.pk}/pull/", {"study_uids": ["1.2.3"]}, format="json").status_code
        == 404
    )


def test_search_passes_qido_through_and_shows_what_was_pulled(api, cast, remote, orthanc, tmp_path):
    folders = phantoms(tmp_path, 2)
    for folder in folders:
        orthanc.upload(folder)
    api.force_authenticate(cast.manager)

    everything = api.get(f"/api/pacs/remotes/{remote.pk}/studies/")
    one = api.get(f"/api/pacs/remotes/{remote.pk}/studies/", {"PatientID": "MRN-1"})
    series = api.get(f"/api/pacs/remotes/{remote.pk}/studies/{original_uids(folders[1])[0]}/series/")

    assert everything.status_code == 200 and len(everything.json()["results"]) == 2
    (study,) = one.json()["results"]
    assert study["patient_id"] == "MRN-1" and study["study_uid"] == original_uids(folders[1])[0]
    assert study["pulled"] is None and "0020000D" in study["dicom"]
    (only,) = series.json()["results"]
    assert only["modality"] == "CT" and only["instances"] == 8


def test_pulled_studies_are_ingested_as_one_job_with_progress(api, cast, remote, orthanc, tmp_path):
    folders = phantoms(tmp_path, 2)
    for folder in folders:
        orthanc.upload(folder)
    uids = [original_uids(f)[0] for f in folders]
    api.force_authenticate(cast.manager)

    response = api.post(
        f"/api/pacs/remotes/{remote.pk}/pull/",
        {"study_uids": uids, "campaign_id": cast.campaign.pk},
        format="json",
    )
    job = run_pull(response.json()["id"])

    assert response.status_code == 202
    assert job.status == "done" and job.progress == 1.0, job.report
    assert len(job.report["scans_created"]) == 2 and not job.report["rejected_series"]
    assert {s["instances"] for s in job.report["pull"]["studies"]} == {8}
    assert set(PulledStudy.objects.values_list("status", flat=True)) == {"done"}
    scans = Scan.objects.filter(pk__in=job.report["scans_created"])
    assert all(s.campaign_scans.filter(campaign=cast.campaign).exists() for s in scans)
    origin = SeriesOrigin.objects.get(scan__study__patient__original_patient_id="MRN-0")
    assert (origin.study_uid, origin.series_uid) == original_uids(folders[0])[
        :2
    ] and origin.source == "dicomweb"
    listed = api.get(f"/api/pacs/remotes/{remote.pk}/studies/", {"PatientID": "MRN-0"}).json()["results"]
    assert listed[0]["pulled"]["status"] == "done" and listed[0]["pulled"]["import_job_id"] == job.pk


def test_a_pull_of_a_study_the_pacs_does_not_have_fails_with_a_reason(cast, remote, orthanc):
    job = pulls.pull_start(actor=cast.manager, remote=remote, study_uids=["1.2.826.0.1.99999"])

    job = run_pull(job.pk)

    assert job.status == "failed"
    assert "no CT series" in job.report["error"] or "does not know" in job.report["error"]
    assert PulledStudy.objects.get().status == "failed"


def test_a_pull_whose_pacs_lost_its_url_after_queueing_fails_with_a_reason(cast, remote):
    job = pulls.pull_start(actor=cast.manager, remote=remote, study_uids=["1.2.826.0.1.99999"])
    remote.dicomweb_url = ""
    remote.save()

    job = run_pull(job.pk)

    assert job.status == "failed"  # not left "running"
    assert "no DICOMweb URL" in job.report["error"]
    assert PulledStudy.objects.get().status == "failed"


def test_wrong_credentials_give_a_reason_a_person_can_act_on(api, cast, remote, orthanc):
    remote.set_secret("wrong")
    remote.save()
    api.force_authenticate(cast.manager)

    response = api.get(f"/api/pacs/remotes/{remote.pk}/studies/")

    assert response.status_code == 400
    assert "refused the credentials" in response.json()["detail"]


def test_the_periodic_pull_imports_new_ct_studies_once(cast, remote, orthanc, tmp_path):
    for folder in phantoms(tmp_path, 2):
        orthanc.upload(folder)
    remote.pull_interval_minutes = 60
    remote.pull_campaign = cast.campaign
    remote.save()

    first = pulls.pull_periodic()
    for job_id in first:
        run_pull(job_id)
    not_due = pulls.pull_periodic()
    RemotePacs.objects.filter(pk=remote.pk).update(last_pull_at=timezone.now() - timedelta(hours=2))
    again = pulls.pull_periodic()

    assert len(first) == 1 and Scan.objects.count() == 2
    assert not_due == [] and again == []
    assert ImportJob.objects.get(pk=first[0]).source.startswith("DICOMweb pull from Orthanc (periodic)")


# --- labels back to the PACS -------------------------------------------------------------------


def curate(cast, scan: Scan, labels: np.ndarray, scan_labels: dict | None = None):
    """An approved batch whose curated revision of `scan` holds `labels` (QC rows made directly)."""
    from annotation import storage
    from annotation.models import Annotation, Revision
    from core.models import Batch, BatchItem, CampaignScan
    from qc.models import BatchReview, CuratedRevision, SpotCheckDraw

    CampaignScan.objects.get_or_create(campaign=cast.campaign, scan=scan)
    batch = Batch.objects.create(
        campaign=cast.campaign, name="b", annotator=cast.annotator, created_by=cast.manager, status="closed"
    )
    BatchItem.objects.create(batch=batch, scan=scan, campaign=cast.campaign, is_open=False, position=0)
    annotation = Annotation.objects.create(campaign=cast.campaign, scan=scan, state="curated")
    sha = storage.store_labels(labels)
    counts = {str(k): int(v) for k, v in zip(*np.unique(labels[labels > 0], return_counts=True), strict=True)}
    revision = Revision.objects.create(
        annotation=annotation,
        number=1,
        author=cast.annotator,
        label_sha256=sha,
        voxel_counts=counts,
        scan_labels=scan_labels or {"diagnosis": "COVID-19"},
    )
    Annotation.objects.filter(pk=annotation.pk).update(head=revision)
    review = BatchReview.objects.create(
        batch=batch,
        campaign=cast.campaign,
        state="approved",
        approved_at=timezone.now(),
        approved_by=cast.senior,
    )
    draw = SpotCheckDraw.objects.create(
        review=review,
        number=1,
        seed=1,
        share=0.3,
        population=[scan.pk],
        sample_size=1,
        sampled_scan_ids=[scan.pk],
    )
    return CuratedRevision.objects.create(
        review=review,
        draw=draw,
        annotation=annotation,
        revision=revision,
        curated_at=timezone.now(),
        approved_by=cast.senior,
    )


def lesion_labels(scan: Scan) -> np.ndarray:
    labels = np.zeros(scan.shape, dtype=np.uint8)
    labels[2:5, 20:30, 20:30] = 1
    labels[3:6, 35:45, 30:40] = 2
    return labels


def pulled_scan(cast, remote, orthanc, tmp_path) -> tuple[Scan, Path]:
    (folder,) = phantoms(tmp_path, 1)
    orthanc.upload(folder)
    job = run_pull(
        pulls.pull_start(actor=cast.manager, remote=remote, study_uids=[original_uids(folder)[0]]).pk
    )
    return Scan.objects.get(pk=job.report["scans_created"][0]), folder


def segs_in_orthanc(orthanc) -> list[pydicom.Dataset]:
    found = requests.post(
        f"{orthanc.url}/tools/find",
        json={"Level": "Instance", "Query": {"Modality": "SEG"}},
        auth=orthanc.auth,
        timeout=10,
    ).json()
    return [
        pydicom.dcmread(
            pydicom.filebase.DicomBytesIO(
                requests.get(f"{orthanc.url}/instances/{i}/file", auth=orthanc.auth, timeout=10).content
            )
        )
        for i in found
    ]


def assert_seg_matches(seg: pydicom.Dataset, folder: Path, labels: np.ndarray, tmp_path: Path) -> None:
    study_uid, series_uid, sops = original_uids(folder)
    assert seg.StudyInstanceUID == study_uid  # filed with the hospital's own study
    assert seg.PatientID == "MRN-0"
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == series_uid
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == set(sops)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [
        "ground-glass opacity",
        "consolidation",
        "other opacity",
    ]
    # Decode with highdicom, in the order of the hospital's instances sorted along z.
    by_z = sorted(
        (pydicom.dcmread(p, stop_before_pixels=True) for p in folder.rglob("*.dcm")),
        key=lambda d: float(d.ImagePositionPatient[2]),
    )
    decoded = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_instance(
        [d.SOPInstanceUID for d in by_z],
        combine_segments=True,
        skip_overlap_checks=True,
    )
    np.testing.assert_array_equal(decoded, labels)
    path = tmp_path / "seg.dcm"
    seg.save_as(path)
    dciodvfy = need("dciodvfy", "dicom3tools")
    result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors


def test_curated_labels_go_back_to_the_pacs_as_a_seg_by_stow(api, cast, remote, orthanc, tmp_path):
    scan, folder = pulled_scan(cast, remote, orthanc, tmp_path)
    labels = lesion_labels(scan)
    curate(cast, scan, labels)
    api.force_authenticate(cast.manager)

    response = api.post(f"/api/pacs/scans/{scan.pk}/send/", {}, format="json")
    from modelassist.pacs_send import send_run

    send = send_run(response.json()["id"])

    assert response.status_code == 202 and response.json()["status"] == "queued"
    assert send.status == "sent", send.detail
    (seg,) = segs_in_orthanc(orthanc)
    assert seg.SOPInstanceUID == send.seg_sop_uid and seg.ContentDescription == "diagnosis=COVID-19"
    assert_seg_matches(seg, folder, labels, tmp_path)
    assert api.get(f"/api/pacs/sends/{send.pk}/").json()["status"] == "sent"


def test_curated_labels_go_back_by_c_store(cast, remote, orthanc, tmp_path):
    scan, folder = pulled_scan(cast, remote, orthanc, tmp_path)
    labels = lesion_labels(scan)
    curate(cast, scan, labels)
    remote.send_method = "cstore"
    remote.save()
    from modelassist.pacs_send import send_run

    send = send_run(services.send_request(actor=cast.manager, scan=scan).pk)

    assert send.status == "sent" and send.method == "cstore", send.detail
    (seg,) = segs_in_orthanc(orthanc)
    assert_seg_matches(seg, folder, labels, tmp_path)


def test_approved_labels_are_sent_once_when_the_pacs_wants_them(cast, remote, orthanc, tmp_path):
    scan, _ = pulled_scan(cast, remote, orthanc, tmp_path)
    curated = curate(cast, scan, lesion_labels(scan))
    remote.send_on_approval = True
    remote.save()
    from modelassist.pacs_send import send_approved_sweep, send_run

    first = send_approved_sweep()
    second = send_approved_sweep()
    for send_id in first:
        send_run(send_id)

    assert len(first) == 1 and second == []
    send = PacsSend.objects.get()
    assert send.trigger == "approval" and send.revision_id == curated.revision_id and send.status == "sent"
    assert len(segs_in_orthanc(orthanc)) == 1


def test_a_scan_that_came_by_upload_is_matched_on_the_pacs_by_its_remapped_uids(
    cast, remote, orthanc, tmp_path
):
    (folder,) = phantoms(tmp_path, 1)
    orthanc.upload(folder)
    report = ingest_path(folder, institution=cast.institution)  # an upload: no SeriesOrigin
    scan = Scan.objects.get(pk=report.scans_created[0])
    labels = lesion_labels(scan)
    curate(cast, scan, labels)
    from modelassist.pacs_send import send_run

    send = send_run(services.send_request(actor=cast.manager, scan=scan).pk)

    assert send.status == "sent", send.detail
    assert SeriesOrigin.objects.get(scan=scan).source == "lookup"
    (seg,) = segs_in_orthanc(orthanc)
    assert_seg_matches(seg, folder, labels, tmp_path)


def test_a_scan_without_curated_labels_is_not_sent(cast, remote, orthanc, tmp_path):
    scan, _ = pulled_scan(cast, remote, orthanc, tmp_path)
    from modelassist.pacs_send import send_run

    send = send_run(services.send_request(actor=cast.manager, scan=scan).pk)

    assert send.status == "failed" and "no curated labels" in send.detail
    assert segs_in_orthanc(orthanc) == []


def test_labels_without_any_lesion_are_sent_too(cast, remote, orthanc, tmp_path):
    """ "No imaging signs of infection" is a finding: the SEG keeps every class, all empty."""
    scan, folder = pulled_scan(cast, remote, orthanc, tmp_path)
    labels = np.zeros(scan.shape, dtype=np.uint8)
    curate(cast, scan, labels, {"diagnosis": "no imaging signs of infection"})
    from modelassist.pacs_send import send_run

    send = send_run(services.send_request(actor=cast.manager, scan=scan).pk)

    assert send.status == "sent", send.detail
    (seg,) = segs_in_orthanc(orthanc)
    assert_seg_matches(seg, folder, labels, tmp_path)

"""Issue #12 item 1: a series UID never links another institution's scan.

Institution A ("demo", data manager `manager`) holds a scan. A data manager of institution B
("elsewhere", `outsider`) sends files carrying A's original UIDs — blank slices, as an attacker
would — through each door: HTTP upload, STOW-RS with ?campaign=, C-STORE. B must get a new,
independent scan of its own (B's own pseudonymised UIDs), and nothing back of A's: no link into
B's campaign, no scan id, no RetrieveURL, no image, no study in QIDO.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.authtoken.models import Token

from core.label_schema import COVID19_SCHEMA
from core.models import Campaign, CampaignScan, Instance, Scan, Study
from imaging import pseudonymise as pseudo
from imaging.ingest.service import ingest_path
from imaging.ingest.store import pseudonym_key, uid_key
from imaging.models import ImportJob
from pacs.models import SeriesOrigin
from tests.conftest import make_series
from tests.pacs.conftest import start_listener, storescu, wait_for

SENDER_B = "HOSP_B"


# --- helpers --------------------------------------------------------------------------------


def dicom_files(folder: Path) -> list[Path]:
    """The series' files in slice order (phantom file names are hashes)."""
    files = [p for p in folder.rglob("*.dcm")]
    return sorted(
        files, key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2])
    )


def craft(
    source: Path, out: Path, *, count: int = 2, patient: str = "B-ATTACK", pixels: int | None = 0
) -> Path:
    """Copies of the first `count` slices of `source` with every UID kept (study, series,
    instances) and another patient; `pixels` replaces the stored values (None keeps them)."""
    out.mkdir(parents=True)
    for path in dicom_files(source)[:count]:
        ds = pydicom.dcmread(path)
        ds.PatientID, ds.PatientName = patient, f"{patient}^X"
        if pixels is not None:
            stored = np.frombuffer(ds.PixelData, dtype="<u2")
            ds.PixelData = np.full_like(stored, pixels).tobytes()
        ds.save_as(out / path.name, enforce_file_format=True)
    return out


def originals(folder: Path) -> dict[str, set[str]]:
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in folder.rglob("*.dcm")]
    return {
        "study": {str(ds.StudyInstanceUID) for ds in datasets},
        "series": {str(ds.SeriesInstanceUID) for ds in datasets},
        "sop": {str(ds.SOPInstanceUID) for ds in datasets},
    }


def uids_of(scan: Scan) -> set[str]:
    return {scan.series_uid, scan.study.study_uid, *scan.instances.values_list("sop_uid", flat=True)}


def multipart(paths: list[Path]) -> tuple[bytes, str]:
    boundary = "tenancy-boundary"
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p.read_bytes() + b"\r\n"
        for p in paths
    )
    return (
        body + f"--{boundary}--\r\n".encode(),
        f'multipart/related; type="application/dicom"; boundary={boundary}',
    )


@pytest.fixture
def campaign_b(cast) -> Campaign:
    return Campaign.objects.create(
        slug="elsewhere-covid",
        name="Elsewhere",
        institution=cast.other_institution,
        label_schema=COVID19_SCHEMA,
    )


@pytest.fixture
def scan_a(cast, tmp_path) -> tuple[Scan, Path]:
    """A's scan (6 slices of 32², in A's campaign) and the folder of its original files."""
    folder = make_series(tmp_path / "a", slices=6, size=32, seed=11, patient="A-1")
    report = ingest_path(folder, institution=cast.institution, campaign_id=cast.campaign.pk)
    assert len(report.scans_created) == 1, report.as_dict()
    return Scan.objects.get(pk=report.scans_created[0]), folder


def assert_b_owns_a_new_scan(cast, campaign_b, scan_a: Scan, new_ids: list[int], report: dict) -> Scan:
    """The report names only B's new scan; it is B's, in B's campaign, with none of A's UIDs;
    A's scan stays out of B's campaign."""
    assert report["scans_existing"] == [] and len(new_ids) == 1, report
    assert scan_a.pk not in new_ids
    scan_b = Scan.objects.select_related("study").get(pk=new_ids[0])
    assert scan_b.study.institution == cast.other_institution
    assert scan_b.study.patient.institution == cast.other_institution
    assert uids_of(scan_b).isdisjoint(uids_of(scan_a))
    assert CampaignScan.objects.filter(campaign=campaign_b, scan=scan_b).exists()
    assert not CampaignScan.objects.filter(campaign=campaign_b, scan=scan_a).exists()
    assert list(scan_a.campaign_scans.values_list("campaign_id", flat=True)) == [cast.campaign.pk]
    return scan_b


def assert_b_reads_nothing_of_a(cast, scan_a: Scan) -> None:
    """Neither WADO-RS (metadata, frames, instance) nor QIDO-RS shows B anything of A's scan."""
    client = Client()
    client.force_login(cast.outsider)
    series = f"/dicomweb/studies/{scan_a.study.study_uid}/series/{scan_a.series_uid}"
    sop = scan_a.instances.first().sop_uid
    for url in (f"{series}/metadata", f"{series}/instances/{sop}/frames/1", f"{series}/instances/{sop}"):
        assert client.get(url).status_code == 404, url
    studies = client.get("/dicomweb/studies", HTTP_ACCEPT="application/dicom+json")
    assert studies.status_code == 200
    assert scan_a.study.study_uid not in studies.content.decode()


# --- the keys ---------------------------------------------------------------------------------


def test_the_same_original_uid_becomes_unrelated_uids_at_two_institutions():
    key = b"platform key"
    at_a, at_b = pseudo.uid_key_for(key, "demo"), pseudo.uid_key_for(key, "elsewhere")

    assert at_a == pseudo.uid_key_for(key, "demo") and at_a != at_b != key
    assert pseudo.remap_uid("1.2.3.4", at_a) != pseudo.remap_uid("1.2.3.4", at_b)
    with pytest.raises(ValueError, match="per institution"):
        pseudo.uid_key_for(key, " ")


# --- door 1: HTTP upload ----------------------------------------------------------------------


@pytest.mark.django_db
def test_an_upload_with_another_institutions_series_uid_is_a_new_scan_of_the_uploader(
    cast, campaign_b, scan_a, api, tmp_path, django_capture_on_commit_callbacks
):
    from platform_core.celery import app

    scan_a, folder_a = scan_a
    crafted = craft(folder_a, tmp_path / "crafted")
    files = [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(crafted.iterdir())]
    api.force_authenticate(cast.outsider)
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post(
                "/api/imports/", {"files": files, "campaign": campaign_b.slug}, format="multipart"
            )
    finally:
        app.conf.task_always_eager = False

    assert response.status_code == 202, response.content
    job = api.get(f"/api/imports/{response.json()['id']}/").json()
    assert job["status"] == "done", job
    assert_b_owns_a_new_scan(cast, campaign_b, scan_a, job["report"]["scans_created"], job["report"])
    assert_b_reads_nothing_of_a(cast, scan_a)
    assert Scan.objects.get(pk=scan_a.pk).volume_sha256 == scan_a.volume_sha256


# --- door 2: STOW-RS ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_stow_with_another_institutions_uids_stores_a_new_scan_and_returns_only_its_urls(
    cast, campaign_b, scan_a, tmp_path
):
    scan_a, folder_a = scan_a
    crafted = craft(folder_a, tmp_path / "crafted")
    sent = originals(crafted)
    body, content_type = multipart(sorted(crafted.iterdir()))
    token = Token.objects.create(user=cast.outsider).key

    response = Client().post(
        f"/dicomweb/studies?campaign={campaign_b.slug}",
        data=body,
        content_type=content_type,
        HTTP_AUTHORIZATION=f"Token {token}",
        HTTP_ACCEPT="application/dicom+json",
    )

    assert response.status_code == 200, response.content
    answer = pydicom.Dataset.from_json(response.json())
    assert {item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence} == sent["sop"]
    job = ImportJob.objects.get(institution=cast.other_institution)
    scan_b = assert_b_owns_a_new_scan(cast, campaign_b, scan_a, job.report["scans_created"], job.report)
    for item in answer.ReferencedSOPSequence:
        assert f"/studies/{scan_b.study.study_uid}/series/{scan_b.series_uid}/instances/" in item.RetrieveURL
    text = response.content.decode() + response.get("Warning", "")
    assert not any(uid in text for uid in uids_of(scan_a)), "A's UIDs must not appear in B's answer"
    assert_b_reads_nothing_of_a(cast, scan_a)


@pytest.mark.django_db
def test_stow_reusing_another_institutions_sop_uids_in_a_refused_series_gets_nothing_of_theirs(
    cast, scan_a, tmp_path
):
    scan_a, folder_a = scan_a
    # One slice is no volume: ingest refuses it; the part must answer failed, not A's instance.
    crafted = craft(folder_a, tmp_path / "crafted", count=1)
    token = Token.objects.create(user=cast.outsider).key
    body, content_type = multipart(sorted(crafted.iterdir()))

    response = Client().post(
        "/dicomweb/studies", data=body, content_type=content_type, HTTP_AUTHORIZATION=f"Token {token}"
    )

    assert response.status_code == 409, response.content
    answer = pydicom.Dataset.from_json(response.json())
    assert "ReferencedSOPSequence" not in answer and len(answer.FailedSOPSequence) == 1
    text = response.content.decode()
    assert not any(uid in text for uid in uids_of(scan_a))
    assert not Scan.objects.filter(study__institution=cast.other_institution).exists()


# --- door 3: C-STORE ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_c_store_of_another_institutions_series_reports_only_a_new_scan_of_the_sender(
    cast, campaign_b, scan_a, tmp_path, settings
):
    settings.INGEST_WORKERS = 0
    settings.CURATECT_INTAKE_CAMPAIGN = campaign_b.slug
    scan_a, folder_a = scan_a
    cast.other_institution.allowed_ae_titles = [SENDER_B]
    cast.other_institution.save(update_fields=["allowed_ae_titles"])
    crafted = craft(folder_a, tmp_path / "crafted")
    listener = start_listener(tmp_path)
    try:
        result = storescu(listener, crafted, calling=SENDER_B)
        assert result.returncode == 0, result.stderr
        wait_for(
            lambda: ImportJob.objects.filter(
                institution=cast.other_institution, status__in=["done", "failed"]
            ).exists(),
            60,
            "B's import",
        )
    finally:
        listener.stop()

    job = ImportJob.objects.get(institution=cast.other_institution)
    assert job.status == "done", job.report
    scan_b = assert_b_owns_a_new_scan(cast, campaign_b, scan_a, job.report["scans_created"], job.report)
    assert not any(uid in json.dumps(job.report) for uid in uids_of(scan_a))
    # B's originals are B's record; A's scan has none written by B's delivery.
    assert SeriesOrigin.objects.get(scan=scan_b).series_uid in originals(folder_a)["series"]
    assert not SeriesOrigin.objects.filter(scan=scan_a).exists()
    assert_b_reads_nothing_of_a(cast, scan_a)


# --- within one institution -----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_known_series_uid_with_other_pixels_is_refused_and_the_stored_scan_kept(
    cast, scan_a, tmp_path, settings
):
    scan_a, folder_a = scan_a
    files_before = {p: p.read_bytes() for p in (Path(settings.MEDIA_ROOT) / scan_a.storage_dir).iterdir()}
    other = Campaign.objects.create(
        slug="second", name="Second", institution=cast.institution, label_schema=COVID19_SCHEMA
    )
    # Same UIDs and slice count, other pixels: a re-export must never swap the images.
    changed = craft(folder_a, tmp_path / "changed", count=6, patient="A-1", pixels=1024 + 40)
    blank_pair = craft(folder_a, tmp_path / "pair", count=2, patient="A-1")

    report = ingest_path(changed, institution=cast.institution, campaign_id=other.pk)
    pair = ingest_path(blank_pair, institution=cast.institution, campaign_id=other.pk)

    for result, why in ((report, "its pixel data differ"), (pair, "this one has 2 slices")):
        assert result.scans_created == [] and result.scans_existing == [], result.as_dict()
        (rejected,) = result.rejected_series
        assert "already stored" in rejected["reason"] and why in rejected["reason"], rejected
    assert Scan.objects.count() == 1 and Instance.objects.count() == 6
    assert Scan.objects.get().volume_sha256 == scan_a.volume_sha256
    assert {
        p: p.read_bytes() for p in (Path(settings.MEDIA_ROOT) / scan_a.storage_dir).iterdir()
    } == files_before
    assert not CampaignScan.objects.filter(campaign=other).exists()


@pytest.mark.django_db
def test_the_same_series_again_is_already_present_and_joins_the_named_campaign(cast, scan_a):
    scan_a, folder_a = scan_a
    other = Campaign.objects.create(
        slug="second", name="Second", institution=cast.institution, label_schema=COVID19_SCHEMA
    )

    again = ingest_path(folder_a, institution=cast.institution, campaign_id=other.pk)

    assert again.scans_existing == [scan_a.pk] and again.scans_created == [] and not again.rejected_series
    assert CampaignScan.objects.filter(campaign=other, scan=scan_a).exists()


@pytest.mark.django_db
def test_scans_stored_under_the_old_platform_wide_key_stay_found_by_their_own_institution_only(
    cast, campaign_b, scan_a
):
    """Scans stored before UID keys were per institution keep their UIDs: a re-import by their
    institution still finds them; another institution's import still does not."""
    scan_a, folder_a = scan_a
    sent = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in folder_a.rglob("*.dcm")}
    old = pseudonym_key()
    new_sops = {pseudo.remap_uid(str(uid), uid_key(cast.institution)): str(uid) for uid in sent}
    for instance in scan_a.instances.all():
        instance.sop_uid = pseudo.remap_uid(new_sops[instance.sop_uid], old)
        instance.save(update_fields=["sop_uid"])
    original = next(iter(originals(folder_a)["series"]))
    Scan.objects.filter(pk=scan_a.pk).update(series_uid=pseudo.remap_uid(original, old))

    again = ingest_path(folder_a, institution=cast.institution)
    elsewhere = ingest_path(folder_a, institution=cast.other_institution, campaign_id=campaign_b.pk)

    assert again.scans_existing == [scan_a.pk] and again.scans_created == []
    assert elsewhere.scans_existing == [] and len(elsewhere.scans_created) == 1
    assert Scan.objects.get(pk=elsewhere.scans_created[0]).study.institution == cast.other_institution


@pytest.mark.django_db
def test_a_series_naming_a_stored_study_of_another_patient_is_refused(cast, scan_a, tmp_path):
    scan_a, folder_a = scan_a
    study_uid = next(iter(originals(folder_a)["study"]))
    other_patient = make_series(
        tmp_path / "b", slices=4, size=32, seed=12, patient="A-2", study_uid=study_uid
    )

    report = ingest_path(other_patient, institution=cast.institution)

    assert report.scans_created == []
    (rejected,) = report.rejected_series
    assert "already stored for another patient" in rejected["reason"]
    assert Study.objects.get().scans.get() == scan_a


@pytest.mark.django_db
def test_a_new_series_reusing_stored_instance_uids_is_refused(cast, scan_a, tmp_path):
    scan_a, folder_a = scan_a
    reused = craft(folder_a, tmp_path / "reused", count=3, patient="A-1", pixels=None)
    series_uid = pydicom.uid.generate_uid()  # one new series, made of the stored instance UIDs
    for path in reused.iterdir():
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series_uid
        ds.save_as(path, enforce_file_format=True)

    report = ingest_path(reused, institution=cast.institution)

    assert report.scans_created == []
    (rejected,) = report.rejected_series
    assert "already stored in another series" in rejected["reason"]

"""Our DICOMweb server (QIDO-RS, STOW-RS, study/series retrieval) driven by the standard
`dicomweb-client` over a live server, and by plain HTTP where a client would hide the details."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import urlparse

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from django.conf import settings
from pydicom.uid import MRImageStorage
from rest_framework.authtoken.models import Token

from core.models import Scan
from core.services.batches import batch_build
from imaging import pseudonymise as pseudo
from imaging.ingest.store import uid_key
from imaging.models import ImportJob
from pacs.models import SeriesOrigin
from tests.conftest import make_series

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(live_server, user=None, *, password=None, token=None) -> DICOMwebClient:
    session = requests.Session()
    if password is not None:
        session.auth = (user.username, password)
    headers = {"Authorization": f"Token {token}"} if token else None
    return DICOMwebClient(f"{live_server.url}/dicomweb", session=session, headers=headers)


def value(item: dict, tag: str):
    values = item.get(tag, {}).get("Value", [None])
    first = values[0]
    return first["Alphabetic"] if isinstance(first, dict) and "Alphabetic" in first else first


@pytest.fixture
def scans(cast, import_phantoms):
    return import_phantoms(2, slices=12, size=32)


@pytest.fixture
def manager_client(live_server, cast):
    return client_for(live_server, cast.manager, password="pw-manager")


def test_qido_studies_lists_the_visible_studies_with_the_usual_attributes(manager_client, scans):
    studies = manager_client.search_for_studies()

    assert len(studies) == 2
    by_uid = {value(s, "0020000D"): s for s in studies}
    scan = scans[0]
    study = by_uid[scan.study.study_uid]
    assert value(study, "00100020") == scan.study.patient.pseudonym  # PatientID
    assert value(study, "00100010") == scan.study.patient.pseudonym  # PatientName
    assert value(study, "00080020") == scan.study.study_date.strftime("%Y%m%d")
    assert value(study, "00080061") == "CT"
    assert value(study, "00201206") == 1 and value(study, "00201208") == 12
    assert value(study, "00081190").endswith(f"/dicomweb/studies/{scan.study.study_uid}")
    assert value(study, "00080030") == "101512"  # StudyTime, from the stored header


def test_qido_matching_dates_wildcards_uid_lists_and_paging(live_server, manager_client, scans, cast):
    scan = scans[0]
    day = scan.study.study_date
    inside = f"{(day - dt.timedelta(days=1)):%Y%m%d}-{(day + dt.timedelta(days=1)):%Y%m%d}"
    pseudonym = scan.study.patient.pseudonym

    by_date = manager_client.search_for_studies(search_filters={"StudyDate": inside})
    after = manager_client.search_for_studies(
        search_filters={"StudyDate": f"{(day + dt.timedelta(days=1)):%Y%m%d}-"}
    )
    by_id = manager_client.search_for_studies(search_filters={"PatientID": pseudonym[:5] + "*"})
    by_uids = manager_client.search_for_studies(
        search_filters={"StudyInstanceUID": f"{scans[0].study.study_uid},{scans[1].study.study_uid}"}
    )
    not_ct = manager_client.search_for_studies(search_filters={"ModalitiesInStudy": "MR"})
    page = requests.get(
        f"{live_server.url}/dicomweb/studies?limit=1&offset=0", auth=("manager", "pw-manager")
    )

    assert scan.study.study_uid in {value(s, "0020000D") for s in by_date}
    assert scan.study.study_uid not in {value(s, "0020000D") for s in after}
    assert {value(s, "00100020") for s in by_id} >= {pseudonym}
    assert len(by_uids) == 2
    assert not_ct == []
    assert page.status_code == 200 and len(page.json()) == 1
    assert "more results" in page.headers["Warning"]


def test_qido_series_and_instances_of_a_study(manager_client, scans):
    scan = scans[0]

    series = manager_client.search_for_series(scan.study.study_uid)
    instances = manager_client.search_for_instances(scan.study.study_uid, scan.series_uid)
    third = manager_client.search_for_instances(
        scan.study.study_uid, scan.series_uid, search_filters={"InstanceNumber": "3"}
    )

    (one,) = series
    assert value(one, "0020000E") == scan.series_uid and value(one, "00080060") == "CT"
    assert value(one, "00201209") == 12 and value(one, "00200011") == 2  # SeriesNumber from the header
    assert {value(i, "00080018") for i in instances} == set(scan.instances.values_list("sop_uid", flat=True))
    assert all(value(i, "00080016") == "1.2.840.10008.5.1.4.1.1.2" for i in instances)
    assert len(third) == 1 and value(third[0], "00200013") == 3


def test_retrieve_series_and_study_return_the_stored_instances(live_server, cast, scans):
    scan = scans[0]
    client = client_for(live_server, token=Token.objects.create(user=cast.manager).key)

    series = client.retrieve_series(scan.study.study_uid, scan.series_uid)
    study = client.retrieve_study(scan.study.study_uid)
    metadata = client.retrieve_study_metadata(scan.study.study_uid)

    stored = {
        i.sop_uid: Path(settings.MEDIA_ROOT) / scan.storage_dir / i.file_name for i in scan.instances.all()
    }
    assert {ds.SOPInstanceUID for ds in series} == set(stored)
    first = next(ds for ds in series if ds.SOPInstanceUID in stored)
    assert first.PixelData == pydicom.dcmread(stored[first.SOPInstanceUID]).PixelData
    assert len(study) == 12 and len(metadata) == 12
    assert "7FE00010" not in metadata[0]


def test_retrieve_can_ask_for_explicit_vr_little_endian(live_server, cast, scans):
    scan = scans[0]
    url = f"{live_server.url}/dicomweb/studies/{scan.study.study_uid}/series/{scan.series_uid}"

    ok = requests.get(
        url,
        auth=("manager", "pw-manager"),
        headers={
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
        },
    )
    refused = requests.get(
        url,
        auth=("manager", "pw-manager"),
        headers={
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.80'
        },
    )

    assert ok.status_code == 200 and "transfer-syntax=1.2.840.10008.1.2.1" in ok.headers["Content-Type"]
    assert refused.status_code == 406


def test_other_institutions_and_strangers_see_nothing(live_server, cast, scans):
    scan = scans[0]
    outsider = client_for(live_server, cast.outsider, password="pw-outsider")
    series_url = f"{live_server.url}/dicomweb/studies/{scan.study.study_uid}/series/{scan.series_uid}"

    anonymous = requests.get(f"{live_server.url}/dicomweb/studies")
    wrong_password = requests.get(f"{live_server.url}/dicomweb/studies", auth=("manager", "nope"))

    assert outsider.search_for_studies() == []
    assert outsider.search_for_series(scan.study.study_uid) == []
    assert requests.get(series_url, auth=("outsider", "pw-outsider")).status_code == 404
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert wrong_password.status_code == 401


def test_an_annotator_sees_only_the_scans_of_their_batches(live_server, cast, scans):
    batch_build(actor=cast.manager, campaign=cast.campaign, scan_ids=[scans[1].pk], annotator=cast.annotator)
    annotator = client_for(live_server, cast.annotator, password="pw-annotator")

    assert [value(s, "0020000D") for s in annotator.search_for_studies()] == [scans[1].study.study_uid]
    assert [value(s, "0020000E") for s in annotator.search_for_series(scans[0].study.study_uid)] == []


def test_stow_stores_a_series_through_ingest_and_answers_per_instance(
    live_server, manager_client, cast, tmp_path
):
    folder = make_series(tmp_path, slices=10, size=32, seed=7, patient="STOW-1")
    datasets = [pydicom.dcmread(p) for p in sorted(folder.rglob("*.dcm"))]

    response = manager_client.store_instances(datasets)

    referenced = response.ReferencedSOPSequence
    assert {item.ReferencedSOPInstanceUID for item in referenced} == {ds.SOPInstanceUID for ds in datasets}
    assert all(item.WarningReason == 0xB000 for item in referenced)  # UIDs were remapped
    scan = Scan.objects.get()
    key = uid_key(cast.institution)
    assert scan.series_uid == pseudo.remap_uid(datasets[0].SeriesInstanceUID, key)
    # (dicomweb-client sends "Host: localhost" without the port, so only the path is checked.)
    assert urlparse(referenced[0].RetrieveURL).path.startswith(
        f"/dicomweb/studies/{scan.study.study_uid}/series/"
    )
    assert scan.study.patient.original_patient_id == "STOW-1"
    job = ImportJob.objects.get()
    assert (
        job.created_by == cast.manager and job.status == "done" and job.source.startswith("DICOMweb STOW-RS")
    )
    assert SeriesOrigin.objects.get(scan=scan).source == "stow"


def test_stow_of_mixed_input_stores_the_ct_and_reports_the_rest(live_server, cast, tmp_path):
    folder = make_series(tmp_path, slices=6, size=32, seed=8, patient="STOW-2")
    datasets = [pydicom.dcmread(p) for p in sorted(folder.rglob("*.dcm"))]
    mr = pydicom.dcmread(sorted(folder.rglob("*.dcm"))[0])
    mr.SOPClassUID = mr.file_meta.MediaStorageSOPClassUID = MRImageStorage
    mr.Modality = "MR"
    mr.SOPInstanceUID = mr.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    body, content_type = multipart([*datasets, mr])

    response = requests.post(
        f"{live_server.url}/dicomweb/studies",
        data=body,
        auth=("manager", "pw-manager"),
        headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
    )

    assert response.status_code == 202
    answer = pydicom.Dataset.from_json(response.json())
    (failed,) = answer.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == mr.SOPInstanceUID and failed.FailureReason == 0x0122
    assert len(answer.ReferencedSOPSequence) == 6
    job_url = response.headers["Content-Location"]
    assert job_url.endswith(f"/api/imports/{ImportJob.objects.get().pk}/")


def test_stow_is_for_data_managers_only(live_server, cast, tmp_path):
    folder = make_series(tmp_path, slices=4, size=32, seed=9, patient="STOW-3")
    body, content_type = multipart([pydicom.dcmread(p) for p in sorted(folder.rglob("*.dcm"))])

    as_annotator = requests.post(
        f"{live_server.url}/dicomweb/studies",
        data=body,
        auth=("annotator", "pw-annotator"),
        headers={"Content-Type": content_type},
    )
    wrong_type = requests.post(
        f"{live_server.url}/dicomweb/studies",
        data=b"{}",
        auth=("manager", "pw-manager"),
        headers={"Content-Type": "application/json"},
    )

    assert as_annotator.status_code == 403
    assert wrong_type.status_code == 415
    assert not Scan.objects.exists()


def test_stow_with_a_session_needs_the_csrf_token(live_server, cast, tmp_path):
    folder = make_series(tmp_path, slices=4, size=32, seed=10, patient="STOW-4")
    body, content_type = multipart([pydicom.dcmread(p) for p in sorted(folder.rglob("*.dcm"))])
    session = requests.Session()
    session.get(f"{live_server.url}/login/")
    token = session.cookies.get("csrftoken")
    login = session.post(
        f"{live_server.url}/login/",
        data={"username": "manager", "password": "pw-manager", "csrfmiddlewaretoken": token},
    )
    assert login.ok

    without = session.post(
        f"{live_server.url}/dicomweb/studies", data=body, headers={"Content-Type": content_type}
    )
    with_token = session.post(
        f"{live_server.url}/dicomweb/studies",
        data=body,
        headers={
            "Content-Type": content_type,
            "X-CSRFToken": session.cookies["csrftoken"],
            "Referer": f"{live_server.url}/",
        },
    )

    assert without.status_code == 403
    assert with_token.status_code == 200


def multipart(datasets) -> tuple[bytes, str]:
    boundary = "stow-test-boundary"
    chunks = []
    for ds in datasets:
        buffer = pydicom.filebase.DicomBytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        chunks.append(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + buffer.getvalue() + b"\r\n"
        )
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_standard_clients_may_send_the_api_token_as_a_bearer_token(live_server, cast, scans):
    token = Token.objects.create(user=cast.manager).key

    bearer = requests.get(f"{live_server.url}/dicomweb/studies", headers={"Authorization": f"Bearer {token}"})
    bad = requests.get(f"{live_server.url}/dicomweb/studies", headers={"Authorization": "Bearer nope"})

    assert bearer.status_code == 200 and len(bearer.json()) == 2
    assert bad.status_code == 401

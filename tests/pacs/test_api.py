"""The PACS API pieces that need no peer: AE titles of the listener, the imports list, send requests."""

from __future__ import annotations

import pytest

from core.models import AuditEvent
from imaging.models import ImportJob
from pacs.models import PacsSend, RemotePacs

pytestmark = pytest.mark.django_db


def test_a_data_manager_sets_the_calling_ae_titles_of_the_institution(api, cast):
    api.force_authenticate(cast.manager)
    url = f"/api/pacs/institutions/{cast.institution.pk}/ae-titles/"

    response = api.put(url, {"allowed_ae_titles": ["HOSP_A", " CT_SCANNER1 "]}, format="json")

    assert response.status_code == 200
    assert response.json()["allowed_ae_titles"] == ["CT_SCANNER1", "HOSP_A"]
    cast.institution.refresh_from_db()
    assert cast.institution.allowed_ae_titles == ["CT_SCANNER1", "HOSP_A"]
    assert AuditEvent.objects.get(action="ae_titles_set").details["new"] == ["CT_SCANNER1", "HOSP_A"]


def test_an_ae_title_selects_one_institution_and_must_be_valid(api, cast):
    cast.other_institution.allowed_ae_titles = ["ELSEWHERE"]
    cast.other_institution.save()
    api.force_authenticate(cast.manager)
    url = f"/api/pacs/institutions/{cast.institution.pk}/ae-titles/"

    taken = api.put(url, {"allowed_ae_titles": ["ELSEWHERE"]}, format="json")
    backslash = api.put(url, {"allowed_ae_titles": ["A\\B"]}, format="json")
    too_long = api.put(url, {"allowed_ae_titles": ["X" * 17]}, format="json")

    assert (
        taken.status_code == 400 and "already used: ELSEWHERE by Elsewhere Clinic" in taken.json()["detail"]
    )
    assert backslash.status_code == 400 and too_long.status_code == 400


def test_only_managers_of_the_institution_see_or_set_its_ae_titles(api, cast):
    url = f"/api/pacs/institutions/{cast.institution.pk}/ae-titles/"
    api.force_authenticate(cast.outsider)
    assert api.get(url).status_code == 404
    api.force_authenticate(cast.annotator)
    assert api.put(url, {"allowed_ae_titles": ["X"]}, format="json").status_code == 404


def test_the_imports_list_shows_the_managed_institutions_jobs_by_kind(api, cast):
    ImportJob.objects.create(institution=cast.institution, source="DICOM C-STORE from HOSP_A@10.0.0.1:104")
    ImportJob.objects.create(institution=cast.institution, source="DICOMweb STOW-RS by manager")
    ImportJob.objects.create(institution=cast.other_institution, source="DICOM C-STORE from X@10.0.0.2:104")
    api.force_authenticate(cast.manager)

    everything = api.get("/api/pacs/imports/").json()
    cstore = api.get("/api/pacs/imports/", {"kind": "cstore"}).json()

    assert len(everything) == 2
    assert [j["source"] for j in cstore] == ["DICOM C-STORE from HOSP_A@10.0.0.1:104"]


def test_a_send_needs_a_pacs_with_a_send_method(api, cast, import_phantoms):
    (scan,) = import_phantoms(1, slices=4, size=32)
    api.force_authenticate(cast.manager)

    none_yet = api.post(f"/api/pacs/scans/{scan.pk}/send/", {}, format="json")
    RemotePacs.objects.create(
        institution=cast.institution,
        name="Archive",
        dicomweb_url="http://pacs.invalid/dw",
        send_method="stow",
    )
    queued = api.post(f"/api/pacs/scans/{scan.pk}/send/", {}, format="json")
    api.force_authenticate(cast.outsider)
    foreign = api.post(f"/api/pacs/scans/{scan.pk}/send/", {}, format="json")

    assert none_yet.status_code == 400 and none_yet.json()["code"] == "no_remote"
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    assert foreign.status_code == 404
    assert PacsSend.objects.get().requested_by == cast.manager

"""One DICOMweb authentication on every route (imaging/dicomweb/auth.py: dicomweb_user).

Every route of imaging/dicomweb/urls.py is read from the URL conf, so a route added without
the one authentication fails here. Each is asked with every scheme a DICOMweb client sends:
the browser's session cookie, `Token <key>`, `Bearer <key>` (OHIF, Slicer) and Basic
user:password; without credentials, or with wrong ones, it answers 401 with a Basic challenge.
A member of the institution gets the scan; an outsider of another institution gets 404 on
retrieval (searches answer an empty list, as QIDO-RS does for "no match").

django-axes counts wrong Basic passwords per username and address; each test sends at most
one, and its database rows go with the test's transaction.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pydicom
import pytest
from django.db import connection
from django.urls import URLPattern, URLResolver, reverse

import imaging.dicomweb.urls as dicomweb_urls
from core.models import Scan
from core.services.batches import batch_build
from core.tokens.services import api_token_create
from tests.conftest import make_series

SCHEMES = ["session", "token", "bearer", "basic"]
REFUSED = ["none", "wrong_token", "wrong_bearer", "wrong_basic"]
STOW_ROUTES = {"dicomweb-studies", "dicomweb-study"}  # the same view: POST is STOW-RS
BOUNDARY = "auth-test-boundary"


def _routes(patterns=dicomweb_urls.urlpatterns, prefix: str = "") -> list[tuple[str, str, list[str]]]:
    """(name, view module, URL parameters) of every route, includes followed."""
    found = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found += _routes(pattern.url_patterns, prefix + str(pattern.pattern))
            continue
        assert isinstance(pattern, URLPattern) and pattern.name, f"unnamed DICOMweb route {pattern.pattern}"
        found.append((pattern.name, pattern.callback.__module__, list(pattern.pattern.converters)))
    return found


ROUTES = _routes()
ROUTE_NAMES = [name for name, _, _ in ROUTES]
# QIDO-RS routes; "studies" is the dispatcher in urls.py whose GET is the study search.
SEARCHES = {name for name, module, _ in ROUTES if module.endswith(".qido")} | {"dicomweb-studies"}


def test_the_url_conf_is_the_one_read_here():
    # The root URL conf serves DICOMweb from this module only: nothing else answers /dicomweb/.
    assert {name for name, *_ in ROUTES} >= STOW_ROUTES
    assert len(ROUTES) == len(set(ROUTE_NAMES)) >= 14
    for name, _, params in ROUTES:
        assert reverse(name, kwargs=dict.fromkeys(params, "1")).startswith("/dicomweb/")


def _url(name: str, scan_or_uids) -> str:
    params = next(p for n, _, p in ROUTES if n == name)
    if isinstance(scan_or_uids, Scan):
        scan = scan_or_uids
        values = {
            "study": scan.study.study_uid,
            "series": scan.series_uid,
            "sop": scan.instances.order_by("index").first().sop_uid,
            "frames": "1",
        }
    else:
        values = scan_or_uids
    missing = set(params) - set(values)
    assert not missing, f"add a value for {missing} of the new route {name} to this test"
    return reverse(name, kwargs={p: values[p] for p in params})


def _credentials(client, scheme: str, user, password: str) -> dict[str, str]:
    if scheme == "session":
        client.force_login(user)
        return {}
    if scheme in ("token", "bearer"):
        _, key = api_token_create(user=user, name=f"{scheme} for DICOMweb", expires_in_days=7)
        return {"HTTP_AUTHORIZATION": f"{scheme.title()} {key}"}
    assert scheme == "basic"
    pair = base64.b64encode(f"{user.username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {pair}"}


def _refused_credentials(scheme: str) -> dict[str, str]:
    wrong = {
        "none": {},
        "wrong_token": {"HTTP_AUTHORIZATION": "Token cct_not-a-key"},
        "wrong_bearer": {"HTTP_AUTHORIZATION": "Bearer cct_not-a-key"},
        "wrong_basic": {
            "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"annotator:not-the-password").decode()
        },
    }
    return wrong[scheme]


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.fixture
def scan(cast, import_phantoms):
    """A scan in a batch of the cast's annotator: theirs to read."""
    (scan,) = import_phantoms(1, slices=4, size=32)
    batch_build(actor=cast.manager, campaign=cast.campaign, scan_ids=[scan.pk], annotator=cast.annotator)
    return scan


@pytest.mark.parametrize("scheme", REFUSED)
@pytest.mark.parametrize("name", ROUTE_NAMES)
def test_every_route_refuses_missing_or_wrong_credentials(client, cast, name, scheme):
    uids = {"study": "1.2.3", "series": "1.2.3.4", "sop": "1.2.3.4.5", "frames": "1"}
    methods = ["get", "post"] if name in STOW_ROUTES else ["get"]

    for method in methods:
        response = getattr(client, method)(_url(name, uids), **_refused_credentials(scheme))

        assert response.status_code == 401, (method, response.content)
        assert response["WWW-Authenticate"].startswith("Basic realm=")
        assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", ROUTE_NAMES)
def test_every_route_serves_a_member_and_hides_the_scan_from_an_outsider(client, cast, scan, name, scheme):
    url = _url(name, scan)

    mine = client.get(url, **_credentials(client, scheme, cast.annotator, "pw-annotator"))
    client.logout()
    theirs = client.get(url, **_credentials(client, scheme, cast.outsider, "pw-outsider"))

    assert mine.status_code == 200, _body(mine)[:300]
    mine_body = _body(mine)
    assert scan.study.study_uid.encode() in mine_body or name.endswith(("frames", "pixeldata"))
    if name in SEARCHES:
        assert theirs.status_code == 200 and json.loads(_body(theirs)) == []
    else:
        assert theirs.status_code == 404, _body(theirs)[:300]
        assert theirs.json()["code"] == "not_found"


def _stow_body(folder: Path) -> tuple[bytes, str, str]:
    files = sorted(folder.rglob("*.dcm"))
    parts = b"".join(
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + f.read_bytes() + b"\r\n"
        for f in files
    )
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    content_type = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
    return parts + f"--{BOUNDARY}--\r\n".encode(), content_type, study


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", sorted(STOW_ROUTES))
def test_stow_stores_for_the_data_manager_and_refuses_another_institutions_campaign(
    client, cast, tmp_path, name, scheme
):
    body, content_type, study = _stow_body(make_series(tmp_path, slices=4, size=32, seed=3, patient="STOW"))
    url = _url(name, {"study": study}) + f"?campaign={cast.campaign.slug}"

    theirs = client.post(
        url, body, content_type=content_type, **_credentials(client, scheme, cast.outsider, "pw-outsider")
    )
    client.logout()
    assert theirs.status_code == 404 and theirs.json()["code"] == "not_found"
    assert not Scan.objects.exists()

    mine = client.post(
        url, body, content_type=content_type, **_credentials(client, scheme, cast.manager, "pw-manager")
    )
    assert mine.status_code == 200, mine.content
    assert Scan.objects.get().study.institution == cast.institution


def _next_scan_id_is(pk: int) -> None:
    """What a rolled-back transaction does to the id sequence: the next scan gets `pk` again."""
    table = Scan._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("UPDATE sqlite_sequence SET seq = %s WHERE name = %s", [pk - 1, table])
        else:
            cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, false)", [table, pk])


def test_series_metadata_never_answers_with_another_series_that_had_the_same_id(client, cast, tmp_path):
    from imaging.ingest.service import ingest_path

    # Given a scan whose metadata was served (and cached), then gone, and the same pixels
    # imported by another institution (other UIDs) under the id it had.
    folder = make_series(tmp_path / "in", slices=4, size=32, seed=5, patient="REUSED").parent
    (first_pk,) = ingest_path(folder, institution=cast.institution).scans_created
    first = Scan.objects.get(pk=first_pk)
    client.force_login(cast.manager)
    assert client.get(_url("dicomweb-series-metadata", first)).status_code == 200
    Scan.objects.filter(pk=first_pk).delete()
    _next_scan_id_is(first_pk)
    (again_pk,) = ingest_path(folder, institution=cast.other_institution).scans_created
    again = Scan.objects.get(pk=again_pk)
    assert again.pk == first.pk and again.volume_sha256 == first.volume_sha256
    assert again.series_uid != first.series_uid

    # When its metadata is asked for, it is the new series', not the cached old one.
    client.force_login(cast.outsider)
    response = client.get(_url("dicomweb-series-metadata", again))

    assert response.status_code == 200
    assert {i["0020000E"]["Value"][0] for i in response.json()} == {again.series_uid}

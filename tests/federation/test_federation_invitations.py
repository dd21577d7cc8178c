"""Run invitations without Flower running (#15, separate installations): the coordinator's data
manager downloads a run's invitation; a site's data manager imports one from another
installation as a participant copy of the run (same key, coordinated elsewhere), joins it by
key, and cannot start or cancel it; bad invitations answer 400 and duplicates 409, with a
reason, and store nothing. An invitation from "another installation" is the coordinator's own
with a new key (the key of a run declared here is already taken in this database)."""

from __future__ import annotations

import json
import stat
import uuid

import pytest

from tests.federation.certs import make_certs

pytestmark = pytest.mark.django_db

RUNS = "/api/federation/runs/"
IMPORT = "/api/federation/invitations/"


@pytest.fixture(autouse=True)
def _private_data_dir(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()


@pytest.fixture
def certs(tmp_path):
    return make_certs(tmp_path / "certs")


def _declare(api, cast, **overrides) -> dict:
    api.force_authenticate(cast.manager)
    response = api.post(
        RUNS,
        {
            "campaign": cast.campaign.pk,
            "name": "three hospitals",
            "superlink_address": "127.0.0.1:9091",
            "architecture": "unet2d-tiny",
            "rounds": 2,
            "min_sites": 1,
            **overrides,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def _tls(certs) -> dict:
    return {
        "superlink_address": "fl.hospital-a.example:9091",
        "tls_ca_cert": str(certs.ca),
        "tls_server_cert": str(certs.cert),
        "tls_server_key": str(certs.key),
    }


def _invitation(api, cast, run: dict) -> dict:
    api.force_authenticate(cast.manager)
    response = api.get(f"{RUNS}{run['id']}/invitation/")
    assert response.status_code == 200, response.content
    return response.json()


def _elsewhere(invitation: dict, **changes) -> dict:
    """The same invitation as if its run had been declared in another installation."""
    return {**invitation, "key": str(uuid.uuid4()), **changes}


def test_the_coordinator_gets_an_invitation_with_the_ca_certificate_and_never_a_key(api, cast, certs):
    from core.models import AuditEvent
    from federation.models import FederationRun

    run = _declare(api, cast, **_tls(certs), dp_enabled=True, dp_clipping_norm=1.0, dp_noise_multiplier=0.3)
    response = api.get(f"{RUNS}{run['id']}/invitation/")
    assert response.status_code == 200, response.content
    assert "attachment" in response["Content-Disposition"]
    doc = response.json()
    assert doc["kind"] == "curatect-federation-invitation" and doc["version"] == 1
    assert doc["key"] == run["key"] and doc["name"] == "three hospitals"
    assert doc["coordinator_institution"] == "Demo Hospital"
    assert doc["superlink_address"] == "fl.hospital-a.example:9091"
    assert doc["label_schema"] == cast.campaign.label_schema and doc["architecture"] == "unet2d-tiny"
    assert (doc["rounds"], doc["local_epochs"], doc["strategy"], doc["min_sites"]) == (2, 1, "fedavg", 1)
    assert (doc["dp_enabled"], doc["dp_noise_multiplier"], doc["dp_clipping_norm"]) == (True, 0.3, 1.0)
    assert doc["secagg_enabled"] is False and doc["train_params"]["batch_size"] == 16
    assert doc["ca_certificate_pem"] == certs.ca.read_text()
    text = json.dumps(doc)
    assert "PRIVATE KEY" not in text and certs.key.read_text() not in text and "tls_server" not in text
    assert AuditEvent.objects.filter(action="federation_invitation_issue", object_id=str(run["id"])).exists()
    assert FederationRun.objects.get(pk=run["id"]).invitation_issued_at is not None


def test_an_invitation_is_the_coordinators_alone_and_never_carries_a_key_file(api, cast, certs, tmp_path):
    run = _declare(api, cast)
    for user in (cast.outsider, cast.annotator):
        api.force_authenticate(user)
        assert api.get(f"{RUNS}{run['id']}/invitation/").status_code == 404
    # A "CA certificate" file that also holds the CA's key is refused, not sent
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(certs.ca.read_text() + certs.ca_key.read_text())
    run = _declare(api, cast, **{**_tls(certs), "tls_ca_cert": str(bundle)})
    response = api.get(f"{RUNS}{run['id']}/invitation/")
    assert response.status_code == 400 and response.json()["code"] == "ca_has_key"
    assert "private key" in response.json()["detail"]


def test_a_site_imports_an_invitation_as_a_copy_coordinated_elsewhere(api, cast, certs, settings):
    from core.models import AuditEvent
    from federation.models import FederationRun

    invitation = _elsewhere(_invitation(api, cast, _declare(api, cast, **_tls(certs))))
    api.force_authenticate(cast.outsider)  # a data manager of Elsewhere Clinic
    response = api.post(IMPORT, {"invitation": invitation}, format="json")
    assert response.status_code == 201, response.content
    copy = response.json()
    assert copy["key"] == invitation["key"] and copy["is_remote"] is True
    assert copy["coordinator"] == "Demo Hospital" and copy["institution"] == "elsewhere"
    assert copy["superlink_address"] == "fl.hospital-a.example:9091" and copy["status"] == "open"
    assert copy["rounds"] == 2 and copy["architecture"] == "unet2d-tiny"
    row = FederationRun.objects.get(pk=copy["id"])
    assert row.label_schema == invitation["label_schema"] and row.coordinator_name == "Demo Hospital"
    # The CA certificate sits in the site's private folder, readable by its owner only
    ca = settings.DATA_DIR / "federation" / "invitations" / invitation["key"] / "ca.pem"
    assert row.tls_ca_cert == str(ca) and ca.read_text() == certs.ca.read_text()
    assert stat.S_IMODE(ca.stat().st_mode) == 0o600 and stat.S_IMODE(ca.parent.stat().st_mode) == 0o700
    assert not row.tls_server_cert and not row.tls_server_key
    event = AuditEvent.objects.get(action="federation_invitation_import", object_id=str(row.pk))
    assert event.actor == cast.outsider and event.details["coordinator"] == "Demo Hospital"
    # Scoped to the importing institution: the coordinator's people in this database do not see it
    api.force_authenticate(cast.manager)
    assert api.get(f"{RUNS}{row.pk}/").status_code == 404
    assert row.pk not in [r["id"] for r in api.get(RUNS).json()]


def test_the_same_invitation_twice_answers_409_and_a_pasted_text_imports_too(api, cast):
    from federation.models import FederationRun

    run = _declare(api, cast)
    invitation = _invitation(api, cast, run)
    api.force_authenticate(cast.outsider)
    # The run was declared in this installation: it is joined by key, not imported
    response = api.post(IMPORT, {"invitation": invitation}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "invitation_imported"
    assert "join it by its key" in response.json()["detail"]
    other = _elsewhere(invitation)
    pasted = json.dumps(other, indent=2)  # the file's text, as pasted into the form
    assert api.post(IMPORT, {"invitation": pasted}, format="json").status_code == 201
    again = api.post(IMPORT, {"invitation": other}, format="json")
    assert again.status_code == 409 and "imported already" in again.json()["detail"]
    assert FederationRun.objects.filter(key=other["key"]).count() == 1


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        (lambda d: "{ not json", "bad_invitation", "not a JSON document"),
        (lambda d: [d], "bad_invitation", "JSON object"),
        (lambda d: {**d, "version": 2}, "invitation_version", "reads version 1"),
        (lambda d: {**d, "kind": "something-else"}, "bad_invitation", "not a CurateCT federation invitation"),
        (lambda d: {k: v for k, v in d.items() if k != "key"}, "bad_invitation", "key"),
        (lambda d: {**d, "rounds": 0}, "bad_invitation", "rounds"),
        (lambda d: {**d, "rounds": "3"}, "bad_invitation", "rounds"),
        (lambda d: {**d, "architecture": "resnet-9000"}, "bad_architecture", "resnet-9000"),
        (lambda d: {**d, "train_params": {"lr": "fast"}}, "bad_invitation", "lr"),
        (lambda d: {**d, "superlink_address": "nonsense"}, "bad_address", "host:port"),
        (lambda d: {**d, "superlink_address": "10.1.2.3:9091"}, "tls_required", "TLS"),
        (
            lambda d: {**d, "ca_certificate_pem": "-----BEGIN CERTIFICATE-----\nAAAA"},
            "bad_ca_certificate",
            "PEM",
        ),
        (lambda d: {**d, "name": "x" * 70_000}, "bad_invitation", "KiB"),
        (lambda d: json.dumps({**d, "pad": "x" * 70_000}), "bad_invitation", "KiB"),
        (lambda d: {**d, "name": "bad\x00name"}, "bad_invitation", "NUL"),
        (lambda d: {**d, "label_schema": "covid"}, "bad_invitation", "label_schema"),
    ],
)
def test_a_bad_invitation_answers_400_with_a_reason_and_stores_nothing(api, cast, change, code, words):
    from federation.models import FederationRun

    invitation = _elsewhere(_invitation(api, cast, _declare(api, cast)))
    before = FederationRun.objects.count()
    api.force_authenticate(cast.outsider)
    response = api.post(IMPORT, {"invitation": change(invitation)}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code and words in response.json()["detail"], response.json()
    assert FederationRun.objects.count() == before


def test_a_key_in_the_invitation_is_refused(api, cast, certs):
    invitation = _elsewhere(
        _invitation(api, cast, _declare(api, cast, **_tls(certs))),
        ca_certificate_pem=certs.ca.read_text() + certs.ca_key.read_text(),
    )
    api.force_authenticate(cast.outsider)
    response = api.post(IMPORT, {"invitation": invitation}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "ca_has_key"


def test_only_data_managers_import_and_a_manager_of_several_says_which(api, cast):
    from core.models import Institution, Membership, Role

    invitation = _elsewhere(_invitation(api, cast, _declare(api, cast)))
    api.force_authenticate(cast.annotator)
    assert api.post(IMPORT, {"invitation": invitation}, format="json").status_code == 404
    third = Institution.objects.create(slug="third", name="Third Hospital")
    Membership.objects.create(user=cast.outsider, institution=third, role=Role.DATA_MANAGER)
    api.force_authenticate(cast.outsider)
    response = api.post(IMPORT, {"invitation": invitation}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "institution_required"
    assert (
        api.post(IMPORT, {"invitation": invitation, "institution": "demo"}, format="json").status_code == 404
    )
    response = api.post(IMPORT, {"invitation": invitation, "institution": "third"}, format="json")
    assert response.status_code == 201 and response.json()["institution"] == "third"


def test_a_copy_is_joined_by_key_at_the_site_and_not_started_or_cancelled_there(api, cast):
    from core.label_schema import COVID19_SCHEMA
    from core.models import Campaign
    from modelassist.models import DatasetExport

    invitation = _elsewhere(_invitation(api, cast, _declare(api, cast)))
    campaign = Campaign.objects.create(
        slug="covid-elsewhere",
        name="COVID-19",
        institution=cast.other_institution,
        label_schema=COVID19_SCHEMA,
    )
    export = DatasetExport.objects.create(campaign=campaign, status="done", version=1, path="exports/e/v1")
    api.force_authenticate(cast.outsider)
    copy = api.post(IMPORT, {"invitation": invitation}, format="json").json()
    # Only the importing institution joins the copy by key (another one of this database cannot)
    api.force_authenticate(cast.manager)
    body = {"key": invitation["key"], "export": export.pk, "start": False}
    assert api.post("/api/federation/sites/", body, format="json").status_code == 404
    api.force_authenticate(cast.outsider)
    joined = api.post("/api/federation/sites/", body, format="json")
    assert joined.status_code == 201, joined.content
    assert joined.json()["run"] == copy["id"] and joined.json()["key"]
    for path in ("start/", "cancel/", "invitation/"):
        call = api.get if path == "invitation/" else api.post
        response = call(f"{RUNS}{copy['id']}/{path}")
        assert response.status_code == 400, (path, response.content)
        assert (
            response.json()["code"] == "coordinated_elsewhere"
            and "Demo Hospital" in response.json()["detail"]
        )


def test_a_coordinator_with_an_invitation_out_starts_without_local_sites(
    api, cast, django_capture_on_commit_callbacks
):
    from federation.models import FederationRun

    run = _declare(api, cast, min_sites=2)
    response = api.post(f"{RUNS}{run['id']}/start/")
    assert response.status_code == 400 and response.json()["code"] == "too_few_sites"
    assert "invitation" in response.json()["detail"]
    _invitation(api, cast, run)
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(f"{RUNS}{run['id']}/start/").status_code == 202
    assert FederationRun.objects.get(pk=run["id"]).status == "queued"

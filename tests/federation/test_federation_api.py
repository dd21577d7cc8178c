"""The federation API and services without Flower running: who may declare, see, join, start
and leave a run; bad input answers 4xx with a reason; another institution's run answers 404."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

RUNS = "/api/federation/runs/"


@pytest.fixture
def hospital(cast):
    """A second hospital with its own campaign, data manager and a finished export."""
    from core.label_schema import COVID19_SCHEMA
    from core.models import Campaign, Institution, Membership, Role, User
    from modelassist.models import DatasetExport

    inst = Institution.objects.create(slug="bravo", name="Bravo Hospital")
    campaign = Campaign.objects.create(
        slug="covid-bravo", name="COVID-19", institution=inst, label_schema=COVID19_SCHEMA
    )
    manager = User.objects.create_user(username="bravo-manager", password="pw")
    Membership.objects.create(user=manager, institution=inst, role=Role.DATA_MANAGER)
    # A finished export row: joining reads only its status, campaign and version.
    export = DatasetExport.objects.create(
        campaign=campaign, status="done", version=1, path="exports/covid-bravo/v1"
    )
    return inst, campaign, manager, export


def _declare(api, cast, **overrides):
    body = {
        "campaign": cast.campaign.pk,
        "name": "three hospitals",
        "superlink_address": "127.0.0.1:9091",
        "architecture": "unet2d-tiny",
        "rounds": 2,
        **overrides,
    }
    api.force_authenticate(cast.manager)
    return api.post(RUNS, body, format="json")


def test_a_coordinator_declares_a_run_and_it_is_audited(api, cast):
    from core.models import AuditEvent

    response = _declare(
        api,
        cast,
        strategy="fedprox",
        proximal_mu=0.01,
        dp_enabled=True,
        dp_noise_multiplier=0.5,
        dp_clipping_norm=1.0,
    )
    assert response.status_code == 201, response.content
    run = response.json()
    assert run["status"] == "open" and run["strategy"] == "fedprox" and run["dp_noise_multiplier"] == 0.5
    event = AuditEvent.objects.get(action="federation_run_declare", object_id=str(run["id"]))
    assert event.details["noise_multiplier"] == 0.5 and event.details["superlink"] == "127.0.0.1:9091"


def test_a_fedavgm_run_keeps_its_momentum_and_builds_flowers_fedavgm(api, cast):
    from flwr.serverapp.strategy import FedAvgM

    from federation.flower.server import build_strategy
    from federation.models import FederationRun

    response = _declare(api, cast, strategy="fedavgm")
    assert response.status_code == 201, response.content
    assert response.json()["server_momentum"] == 0.9  # the default
    run = FederationRun.objects.get(pk=response.json()["id"])
    strategy = build_strategy(run, expected_sites=3)
    assert isinstance(strategy, FedAvgM) and strategy.server_momentum == 0.9 and strategy.server_opt
    # Another strategy keeps no momentum, whatever was sent
    other = _declare(api, cast, strategy="fedavg", server_momentum=0.5).json()
    assert other["server_momentum"] == 0.0


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"superlink_address": "10.1.2.3:9091"}, "tls_required"),  # no TLS off loopback
        ({"superlink_address": "nonsense"}, "bad_address"),
        ({"strategy": "fedprox"}, "bad_params"),  # FedProx without mu
        ({"strategy": "fedavgm", "server_momentum": 0}, "bad_params"),  # FedAvgM without momentum
        ({"strategy": "fedavgm", "server_momentum": 1.5}, "bad_params"),
        ({"train_params": {"classifier_epochs": 0}}, "bad_params"),
        ({"dp_enabled": True, "dp_clipping_norm": 0}, "bad_params"),
        ({"rounds": 0}, "bad_params"),
        ({"architecture": "resnet-9000"}, "bad_architecture"),
        ({"train_params": {"lr": "fast"}}, "bad_params"),
        (
            {"tls_server_cert": "/nope.pem", "tls_server_key": "/nope.key", "tls_ca_cert": "/nope-ca.pem"},
            "tls_missing",
        ),
        ({"secagg_enabled": True, "min_sites": 2}, "secagg_too_few_sites"),  # SecAgg+ needs 3
    ],
)
def test_bad_declarations_answer_400_with_a_reason(api, cast, overrides, code):
    from federation.models import FederationRun

    response = _declare(api, cast, **overrides)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code and response.json()["detail"]
    assert not FederationRun.objects.exists()


def test_another_institution_sees_no_run_and_cannot_declare_on_our_campaign(api, cast):
    run_id = _declare(api, cast).json()["id"]
    api.force_authenticate(cast.outsider)
    assert api.get(f"{RUNS}{run_id}/").status_code == 404
    assert api.post(f"{RUNS}{run_id}/start/").status_code == 404
    assert api.get(RUNS).json() == []
    response = api.post(
        RUNS, {"campaign": cast.campaign.pk, "name": "x", "superlink_address": "127.0.0.1:1"}, format="json"
    )
    assert response.status_code == 404


def test_an_annotator_cannot_declare(api, cast):
    api.force_authenticate(cast.annotator)
    response = api.post(
        RUNS, {"campaign": cast.campaign.pk, "name": "x", "superlink_address": "127.0.0.1:1"}, format="json"
    )
    assert response.status_code == 404


def test_a_site_joins_by_key_sees_the_run_leaves_and_the_run_needs_enough_sites(api, cast, hospital):
    from core.models import AuditEvent
    from federation.models import FederationSite

    _, _, manager, export = hospital
    run = _declare(api, cast, min_sites=1).json()
    api.force_authenticate(manager)
    joined = api.post(
        "/api/federation/sites/", {"key": run["key"], "export": export.pk, "start": False}, format="json"
    )
    assert joined.status_code == 201, joined.content
    site = joined.json()
    assert site["status"] == "joined" and site["institution"] == "bravo" and site["export_version"] == 1
    assert api.get(f"{RUNS}{run['id']}/").status_code == 200  # a site sees the run it joined
    again = api.post("/api/federation/sites/", {"key": run["key"], "export": export.pk}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "already_joined"
    # The coordinator cannot take another hospital's site out; the site's own manager can
    api.force_authenticate(cast.manager)
    assert api.post(f"/api/federation/sites/{site['id']}/leave/", {}, format="json").status_code == 404
    api.force_authenticate(manager)
    left = api.post(f"/api/federation/sites/{site['id']}/leave/", {"reason": "paused"}, format="json")
    assert left.status_code == 200 and left.json()["status"] == "left"
    assert AuditEvent.objects.filter(
        action="federation_site_leave", object_id=str(site["id"]), from_state="joined"
    ).exists()
    assert FederationSite.objects.get(pk=site["id"]).left_by == manager
    # With its only site gone, the run cannot start
    api.force_authenticate(cast.manager)
    response = api.post(f"{RUNS}{run['id']}/start/")
    assert response.status_code == 400 and response.json()["code"] == "too_few_sites"


def test_a_site_cannot_join_with_another_schema_or_an_unfinished_export(api, cast, hospital):
    from modelassist.models import DatasetExport

    _, campaign, manager, export = hospital
    run = _declare(api, cast).json()
    api.force_authenticate(manager)
    pending = DatasetExport.objects.create(campaign=campaign, status="queued")
    response = api.post("/api/federation/sites/", {"key": run["key"], "export": pending.pk}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "bad_export"
    campaign.label_schema = {**campaign.label_schema, "classes": campaign.label_schema["classes"][:1]}
    campaign.save()
    response = api.post("/api/federation/sites/", {"key": run["key"], "export": export.pk}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "schema_mismatch"
    # An export of another institution is not found
    api.force_authenticate(cast.outsider)
    response = api.post("/api/federation/sites/", {"key": run["key"], "export": export.pk}, format="json")
    assert response.status_code == 404


def test_starting_a_run_and_a_site_queues_their_train_tasks(
    api, cast, hospital, django_capture_on_commit_callbacks
):
    from django.conf import settings

    from federation.models import FederationRun, FederationSite
    from platform_core.celery import app, task_named

    _, _, manager, export = hospital
    run = _declare(api, cast, min_sites=1).json()
    api.force_authenticate(manager)
    with django_capture_on_commit_callbacks(execute=True):  # the tasks go to the tests' memory broker
        site = api.post(
            "/api/federation/sites/", {"key": run["key"], "export": export.pk}, format="json"
        ).json()
    assert site["status"] == "queued"
    api.force_authenticate(cast.manager)
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(f"{RUNS}{run['id']}/start/").status_code == 202
    assert FederationRun.objects.get(pk=run["id"]).status == "queued"
    assert FederationSite.objects.get(pk=site["id"]).status == "queued"
    for name in ("federation.tasks.federation_run_coordinate", "federation.tasks.federation_site_serve"):
        assert (
            task_named(name).queue == "train"
            and settings.CELERY_TASK_ROUTES["federation.*"]["queue"] == "train"
        )
    assert app.conf.task_routes or settings.CELERY_TASK_ROUTES
    response = api.post(f"{RUNS}{run['id']}/start/")
    assert response.status_code == 400 and response.json()["code"] == "not_open"


def test_tls_certificates_go_to_the_superlink_and_supernode_and_insecure_only_without_them(tmp_path):
    from federation.processes import superlink_command, supernode_command

    plain = superlink_command("127.0.0.1:9091")
    assert "--insecure" in plain and plain[plain.index("--port") + 1] == "9091"
    tls = superlink_command("0.0.0.0:9091", cert="/c/server.pem", key="/c/server.key", ca="/c/ca.pem")
    assert "--insecure" not in tls
    assert (
        tls[tls.index("--ssl-certfile") + 1] == "/c/server.pem"
        and tls[tls.index("--ssl-keyfile") + 1] == "/c/server.key"
    )
    node = supernode_command(
        "hub.example.org:9091",
        {"curatect-site-id": 7, "curatect-superlink": "hub.example.org:9091"},
        ca="/c/ca.pem",
    )
    assert "--insecure" not in node and node[node.index("--root-certificates") + 1] == "/c/ca.pem"
    assert (
        node[node.index("--node-config") + 1]
        == 'curatect-site-id=7 curatect-superlink="hub.example.org:9091"'
    )
    assert "--insecure" in supernode_command("127.0.0.1:9091", {"curatect-site-id": 7})


def test_a_run_with_tls_accepts_a_remote_superlink(api, cast, tmp_path):
    for name in ("server.pem", "server.key", "ca.pem"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    response = _declare(
        api,
        cast,
        superlink_address="hub.example.org:9091",
        tls_server_cert=str(tmp_path / "server.pem"),
        tls_server_key=str(tmp_path / "server.key"),
        tls_ca_cert=str(tmp_path / "ca.pem"),
    )
    assert response.status_code == 201, response.content
    response = _declare(
        api, cast, superlink_address="hub.example.org:9091", tls_server_cert=str(tmp_path / "server.pem")
    )
    assert response.status_code == 400 and response.json()["code"] == "tls_incomplete"

"""Each hospital runs its own CurateCT (#15): the coordinator's installation is the test
database; the site's is a second SQLite database with its own data folder, migrated by
`manage.py migrate` in a subprocess and filled by tests/federation/site_installation.py there
(institution, people, a curated export through the real services). The two share nothing but
the invitation file and the wire.

The coordinator declares a run with TLS (a throwaway CA), downloads its invitation; the site
imports it through its own API (the errors a data manager could make answer 400/409), joins
the copy with its export and serves it with `manage.py federation_supernode`, which dials the
invitation's address with the invitation's CA. One round end to end; then the site's own
database holds what left and what came back, and the coordinator's holds no site row but
names the site in its history by what the site's ClientApp reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.federation.certs import make_certs
from tests.federation.sites import TINY_TRAIN, Jobs, no_flower_left

pytestmark = pytest.mark.django_db(transaction=True)
JOB_S = 600.0  # a ClientApp process per message (Django + torch each) on a busy 2-core machine


def _site_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="platform_core.settings",
        DATABASE_URL=f"sqlite:///{root / 'site.sqlite3'}",
        CURATECT_DATA_DIR=str(root / "data"),
        CURATECT_MEDIA_ROOT=str(root / "sites" / "bravo"),  # the site's institution is "bravo"
        CURATECT_MIN_TEST_CASES="1",  # four patients: one test case
        CELERY_BROKER_URL="memory://",  # no worker at this site: its data manager runs the command
        PYTHONPATH=str(django_settings.BASE_DIR),
    )
    return env


def _site(env: dict[str, str], *args: str, timeout: float = 300) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "tests.federation.site_installation", *args],
        env=env,
        cwd=str(django_settings.BASE_DIR),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_site_with_its_own_installation_takes_part_through_an_invitation(api, cast, settings, tmp_path):
    from federation.models import FederationSite
    from federation.processes import free_port
    from federation.services.runs import federation_run_execute

    root = tmp_path / "bravo"
    env = _site_env(root)
    migrate = subprocess.Popen(
        [sys.executable, "manage.py", "migrate", "-v0"],
        env=env,
        cwd=str(settings.BASE_DIR),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    settings.DATA_DIR = tmp_path / "coordinator"  # the coordinator's SuperLink home, apart
    settings.DATA_DIR.mkdir()
    certs = make_certs(tmp_path / "certs")
    api.force_authenticate(cast.manager)
    declared = api.post(
        "/api/federation/runs/",
        {
            "campaign": cast.campaign.pk,
            "name": "two installations",
            "superlink_address": f"127.0.0.1:{free_port()}",
            "architecture": "unet2d-tiny",
            "rounds": 1,
            "local_epochs": 1,
            "min_sites": 1,
            "train_params": TINY_TRAIN,
            "round_timeout_s": 300,
            "tls_ca_cert": str(certs.ca),
            "tls_server_cert": str(certs.cert),
            "tls_server_key": str(certs.key),
        },
        format="json",
    )
    assert declared.status_code == 201, declared.content
    run_id = declared.json()["id"]
    invitation = api.get(f"/api/federation/runs/{run_id}/invitation/")
    assert invitation.status_code == 200, invitation.content
    (tmp_path / "invitation.json").write_bytes(invitation.content)  # what goes by e-mail
    assert migrate.wait(timeout=300) == 0, migrate.stdout.read()

    # The site's installation: its data, the invitation imported through its API, joined
    made = _site(env, "setup", str(tmp_path / "sources"), "10")
    joined = _site(env, "join", str(tmp_path / "invitation.json"))
    assert joined["join_before_import"]["status"] == 404
    assert "import its invitation" in joined["join_before_import"]["body"]["detail"]
    assert joined["foreign_version"]["status"] == 400
    assert joined["foreign_version"]["body"]["code"] == "invitation_version"
    assert joined["oversized"]["status"] == 400 and "KiB" in joined["oversized"]["body"]["detail"]
    assert joined["malformed"]["status"] == 400 and "JSON" in joined["malformed"]["body"]["detail"]
    assert joined["import"]["status"] == 201, joined["import"]
    assert (
        joined["import"]["body"]["is_remote"] and joined["import"]["body"]["coordinator"] == "Demo Hospital"
    )
    assert joined["import_again"]["status"] == 409
    for refused in ("start_copy", "cancel_copy"):
        assert joined[refused]["status"] == 400
        assert joined[refused]["body"]["code"] == "coordinated_elsewhere"
    assert joined["join"]["status"] == 201, joined["join"]
    assert joined["start_site"]["status"] == 202, joined["start_site"]
    site_id, site_key = joined["join"]["body"]["id"], joined["join"]["body"]["key"]

    # The coordinator starts with no site of its own: an invitation went out
    started = api.post(f"/api/federation/runs/{run_id}/start/")
    assert started.status_code == 202, started.content
    jobs = Jobs()
    serve_env = {
        **env,
        "CURATECT_FEDERATION_OPEN_LOG": str(tmp_path / "opened-bravo.log"),
        "CURATECT_FEDERATION_WATCH": str(tmp_path),
    }
    with no_flower_left(settings.DATA_DIR), no_flower_left(root / "data"):
        jobs.start(federation_run_execute, run_id, worker="coordinator")
        supernode = subprocess.Popen(
            [sys.executable, "manage.py", "federation_supernode", str(site_id)],
            env=serve_env,
            cwd=str(settings.BASE_DIR),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            served = supernode.communicate(timeout=JOB_S)[0]
        except subprocess.TimeoutExpired:
            supernode.terminate()  # its services stop the SuperNode's processes on the way out
            served = supernode.communicate(timeout=60)[0]
        from federation.models import FederationRun

        jobs.join(120, FederationRun.objects.get(pk=run_id))
    assert supernode.returncode == 0, served[-4000:]
    assert not jobs.errors, jobs.errors
    from federation.models import FederationRun

    run = FederationRun.objects.get(pk=run_id)
    assert run.status == "done", run.error

    # The coordinator's database: no site row, no site institution; its history names the site
    assert not FederationSite.objects.exists()
    assert not type(cast.institution).objects.filter(name=made["institution"]).exists()
    assert [h["round"] for h in run.history] == [1]
    (participant,) = run.history[0]["participants"]
    assert participant["institution"] == made["institution"] == "Bravo Hospital"
    assert participant["site_key"] == site_key and participant["site"] is None
    assert participant["samples"] >= 1 and participant["bytes"] > 0 and len(participant["sha256"]) == 64

    # The site's own database: what left, what came back, the model version, promotion
    seen = _site(env, "report")
    assert seen["institutions"] == ["Bravo Hospital"]  # the coordinator's institution is not here
    assert seen["run"]["is_remote"] and seen["run"]["coordinator_name"] == "Demo Hospital"
    assert seen["run"]["key"] == str(run.key) and seen["run"]["history"] == []
    assert seen["run"]["ca_mode"] == "0o600" and seen["run"]["ca_under_data_dir"]
    assert seen["site"] == {"key": site_key, "status": "done", "error": ""}
    (r,) = seen["rounds"]
    assert r["number"] == 1 and r["sent_to"] == run.superlink_address
    # What left the site is what reached the coordinator, byte for byte
    assert (r["sent_bytes"], r["sent_sha256"], r["sample_count"]) == (
        participant["bytes"],
        participant["sha256"],
        participant["samples"],
    )
    assert r["model_version"] and r["campaign_of_version"] == seen["site_campaign"]
    assert r["lineage"]["federation_run_key"] == str(run.key) and r["lineage"]["round"] == 1
    assert [p["institution"] for p in r["lineage"]["participants"]] == ["Bravo Hospital"]
    assert r["global_sha256"] and r["decision"] and r["promoted"] is not None
    for action in (
        "federation_invitation_import",
        "federation_site_join",
        "federation_update_sent",
        "federation_model_received",
        "federation_site_done",
    ):
        assert action in seen["audit"], (action, seen["audit"])
    # The site's ClientApp received only parameters and a config, and opened only its own files
    lines = (tmp_path / "opened-bravo.log").read_text().splitlines()
    assert {x[9:] for x in lines if x.startswith("received ")} == {
        "arrays ArrayRecord",
        "config ConfigRecord",
    }
    opened = {x[5:] for x in lines if x.startswith("open ")}
    assert opened and all(p.startswith(str(root) + "/") for p in opened), opened

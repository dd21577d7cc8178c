"""Each hospital runs its own CurateCT (#15): the coordinator's installation is the test
database; the site's is a second SQLite database with its own data folder, migrated by
`manage.py migrate` in a subprocess and filled by tests/federation/site_installation.py there
(institution, people, a curated export through the real services). The two share nothing but
the invitation file and the wire.

The coordinator declares a run with TLS (a throwaway CA), downloads its invitation and starts
the run with no site of its own; the site imports it through its own API (the errors a data manager could make answer 400/409), joins
the copy with its export and serves it with `manage.py federation_supernode`, which dials the
invitation's address with the invitation's CA. One round end to end; then the site's own
database holds what left and what came back, and the coordinator's holds no site row but
names the site in its history by what the site's ClientApp reported."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.federation.certs import make_certs
from tests.federation.sites import TINY_TRAIN, Jobs, no_flower_left

pytestmark = pytest.mark.django_db(transaction=True)
# What the site's preparation and the round may take: a ClientApp process per message (Django
# + torch each) on a busy 2-core machine; finite so a hang fails.
JOB_S = 900.0


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


def _prepare(env: dict[str, str], *args: str, timeout: float = 600) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "tests.federation.site_installation", "prepare", *args],
        env=env,
        cwd=str(django_settings.BASE_DIR),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _site_db(root: Path, sql: str, *params) -> list[tuple]:
    """What the site's own database holds, read as a file (the test process has no Django
    connection to it: it is another installation's)."""
    with contextlib.closing(sqlite3.connect(root / "site.sqlite3")) as db:
        return db.execute(sql, params).fetchall()


def _hex(key: str) -> str:
    return uuid.UUID(key).hex  # Django keeps a UUID as 32 hex digits on SQLite


def _serve_until_done(supernode: subprocess.Popen, run_id: int) -> str:
    """The site's SuperNode command runs until its last round came back; if the coordinator's
    run fails first (it never tells the sites), stop it as its data manager would."""
    from federation.models import FederationRun

    deadline = time.monotonic() + JOB_S
    while supernode.poll() is None:
        failed = FederationRun.objects.filter(pk=run_id, status="failed").exists()
        if failed or time.monotonic() > deadline:
            supernode.terminate()
            break
        time.sleep(1.0)
    return supernode.communicate(timeout=120)[0]


def test_a_site_with_its_own_installation_takes_part_through_an_invitation(api, cast, settings, tmp_path):
    from core.models import Institution
    from federation.models import FederationRun, FederationSite
    from federation.processes import free_port
    from federation.services.runs import federation_run_execute

    root = tmp_path / "bravo"
    env = _site_env(root)
    # The site's installation: a database of its own, migrated while the coordinator prepares
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
            "round_timeout_s": int(JOB_S),  # the ServerApp waits this long for the site to connect
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
    # The coordinator starts with no site of its own (an invitation went out): its SuperLink
    # and ServerApp come up while the site gets ready, and wait for the site's SuperNode.
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
        try:
            assert migrate.wait(timeout=JOB_S) == 0, migrate.stdout.read()
            made = _prepare(env, str(tmp_path / "sources"), "10", str(tmp_path / "invitation.json"))
            joined = made["join"]
            assert joined["join"]["status"] == 201, joined
            assert joined["start_site"]["status"] == 202, joined["start_site"]
            supernode = subprocess.Popen(
                [sys.executable, "manage.py", "federation_supernode", str(joined["join"]["body"]["id"])],
                env=serve_env,
                cwd=str(settings.BASE_DIR),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            served = _serve_until_done(supernode, run_id)
        finally:
            jobs.join(120, FederationRun.objects.get(pk=run_id))
    run = FederationRun.objects.get(pk=run_id)
    assert run.status == "done", run.error
    assert supernode.returncode == 0, served[-4000:]
    assert not jobs.errors, jobs.errors

    # At the site, through its own API: the key means nothing before the import; a foreign
    # version, an oversized or a cut-off invitation answers 400 with a reason, a second import
    # 409; the copy is coordinated elsewhere and cannot be started or cancelled there
    assert joined["join_before_import"]["status"] == 404
    assert "import its invitation" in joined["join_before_import"]["body"]["detail"]
    assert joined["foreign_version"]["status"] == 400
    assert joined["foreign_version"]["body"]["code"] == "invitation_version"
    assert joined["oversized"]["status"] == 400 and "KiB" in joined["oversized"]["body"]["detail"]
    assert joined["malformed"]["status"] == 400 and "JSON" in joined["malformed"]["body"]["detail"]
    assert joined["import"]["status"] == 201, joined["import"]
    copy = joined["import"]["body"]
    assert copy["is_remote"] and copy["coordinator"] == "Demo Hospital" and copy["key"] == str(run.key)
    assert joined["import_again"]["status"] == 409
    for refused in ("start_copy", "cancel_copy"):
        assert joined[refused]["status"] == 400
        assert joined[refused]["body"]["code"] == "coordinated_elsewhere"
    site_key = joined["join"]["body"]["key"]

    # The coordinator's database: no site row, no site institution; its history names the site
    assert not FederationSite.objects.exists()
    assert not Institution.objects.filter(name="Bravo Hospital").exists()
    assert [h["round"] for h in run.history] == [1]
    (participant,) = run.history[0]["participants"]
    assert participant["institution"] == made["setup"]["institution"] == "Bravo Hospital"
    assert participant["site_key"] == site_key and participant["site"] is None
    assert participant["samples"] >= 1 and participant["bytes"] > 0 and len(participant["sha256"]) == 64

    # The site's own database: its copy of the run, what left, what came back, the model version
    assert _site_db(root, "SELECT name FROM platform_core_institution") == [("Bravo Hospital",)]
    ((is_remote, coordinator, ca),) = _site_db(
        root,
        "SELECT is_remote, coordinator_name, tls_ca_cert FROM federation_federationrun WHERE key = ?",
        _hex(copy["key"]),
    )
    assert is_remote and coordinator == "Demo Hospital"
    assert ca.startswith(str(root / "data") + "/") and stat.S_IMODE(os.stat(ca).st_mode) == 0o600
    ((site_pk, status, campaign),) = _site_db(
        root, "SELECT id, status, campaign_id FROM federation_federationsite WHERE key = ?", _hex(site_key)
    )
    assert status == "done"
    ((number, samples, size, sha, sent_to, global_sha, participants, version, promoted),) = _site_db(
        root,
        "SELECT number, sample_count, sent_bytes, sent_sha256, sent_to, global_sha256, participants, "
        "model_version_id, promoted FROM federation_federationround WHERE site_id = ?",
        site_pk,
    )
    # What left the site is what reached the coordinator, byte for byte
    assert (number, size, sha, samples) == (
        1,
        participant["bytes"],
        participant["sha256"],
        participant["samples"],
    )
    assert sent_to == run.superlink_address and global_sha and promoted is not None
    assert [p["institution"] for p in json.loads(participants)] == ["Bravo Hospital"]
    ((version_campaign, metrics),) = _site_db(
        root, "SELECT campaign_id, metrics FROM modelassist_modelversion WHERE id = ?", version
    )
    lineage = json.loads(metrics)["federation"]
    assert version_campaign == campaign and lineage["federation_run_key"] == str(run.key)
    assert lineage["round"] == 1 and lineage["parameter_sha256"] == global_sha
    actions = {a for (a,) in _site_db(root, "SELECT action FROM platform_core_auditevent")}
    assert {
        "federation_invitation_import",
        "federation_site_join",
        "federation_update_sent",
        "federation_model_received",
        "federation_site_done",
    } <= actions, actions
    # The site's ClientApp received only parameters and a config, and opened only its own files
    lines = (tmp_path / "opened-bravo.log").read_text().splitlines()
    assert {x[9:] for x in lines if x.startswith("received ")} == {
        "arrays ArrayRecord",
        "config ConfigRecord",
    }
    opened = {x[5:] for x in lines if x.startswith("open ")}
    assert opened and all(p.startswith(str(root) + "/") for p in opened), opened

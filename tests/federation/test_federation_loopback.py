"""Federated retraining end to end on loopback (#15 §4): a SuperLink and three SuperNodes, each
SuperNode bound to its own site — its own institution, campaign, people, data folder (MEDIA_ROOT,
chmod 700, under a path of its own) and curated export — in one test database. Two rounds through
the real services and Flower's real deployment processes (flower-superlink, flower-supernode,
their SuperExec, flwr-serverapp, flwr-clientapp).

Each ClientApp process logs (a Python audit hook, test-only) every file it opens under the
sites' common folder and the kind of every record it receives: the test shows that no site's
process opened another site's files and that a ClientApp only ever received parameters and a
config (the site's images and labels never crossed the wire)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.federation.sites import TINY_TRAIN, Jobs, make_site, no_flower_left

pytestmark = pytest.mark.django_db(transaction=True)
# What the jobs may take: Flower starts a ClientApp process per message (Django + torch each),
# which on a 2-core machine shared with other work can take minutes; finite so a hang fails.
JOB_S = 900.0


@pytest.fixture(autouse=True)
def _small_test_split(settings):
    settings.CURATECT_MIN_TEST_CASES = 1  # four patients per site: one test case


@pytest.fixture
def federation(cast, settings, tmp_path):
    """Three hospitals with their exports, and a run declared by the first one's data manager."""
    from federation.processes import free_port
    from federation.services.runs import federation_run_declare
    from federation.services.sites import federation_site_join

    root = tmp_path / "sites"
    root.mkdir()
    sites = [
        make_site(settings, root, tmp_path / "sources", "alpha", seed=0, cast=cast),
        make_site(settings, root, tmp_path / "sources", "bravo", seed=10),
        make_site(settings, root, tmp_path / "sources", "charlie", seed=20),
    ]

    def declare(**kw):
        run = federation_run_declare(
            actor=cast.manager,
            institution=cast.institution,
            campaign=cast.campaign,
            name="three hospitals",
            superlink_address=f"127.0.0.1:{free_port()}",
            architecture="unet2d-tiny",
            rounds=2,
            local_epochs=1,
            min_sites=2,
            train_params=TINY_TRAIN,
            **kw,
        )
        members = [federation_site_join(actor=s.manager, run=run, export=s.export) for s in sites]
        return run, members

    return root, sites, declare


def _serve(jobs: Jobs, root: Path, sites, members, run) -> None:
    from federation.services.runs import federation_run_execute, federation_run_start
    from federation.services.sites import federation_site_serve, federation_site_start

    # The task messages go to memory in tests; the jobs run in threads, as train workers run them.
    for member in members:
        federation_site_start(actor=None, site=member)
    federation_run_start(actor=members[0].joined_by, run=run)
    jobs.start(federation_run_execute, run.pk, worker="coordinator")
    for site, member in zip(sites, members, strict=True):
        env = {
            "CURATECT_MEDIA_ROOT": str(site.media),  # the site's own data folder
            "CURATECT_FEDERATION_OPEN_LOG": str(root.parent / f"opened-{site.slug}.log"),
            "CURATECT_FEDERATION_WATCH": str(root),
        }
        jobs.start(federation_site_serve, member.pk, worker=f"train@{site.slug}", extra_env=env)


def _opened(root: Path, slug: str) -> tuple[set[str], set[str]]:
    lines = (root.parent / f"opened-{slug}.log").read_text().splitlines()
    return {x[5:] for x in lines if x.startswith("open ")}, {
        x[9:] for x in lines if x.startswith("received ")
    }


def test_three_sites_two_rounds_and_a_site_that_leaves_after_the_first(cast, settings, federation):
    """One Flower run shows both (each costs minutes here): all three sites train round 1; the
    third site's data manager then takes it out, and round 2 goes on with the two that stayed."""
    from core.models import AuditEvent
    from federation.models import FederationRound
    from federation.services.sites import federation_site_leave
    from federation.training import arrays_digest, initial_model
    from modelassist.models import ModelVersion
    from modelassist.services.model_versions import file_sha256

    segmenter_bytes, _ = arrays_digest(
        [v.numpy() for v in initial_model("unet2d-tiny").state_dict().values()]
    )
    root, sites, declare = federation
    run, members = declare()
    leaving = members[2]
    jobs = Jobs()
    with no_flower_left(settings.DATA_DIR):
        _serve(jobs, root, sites, members, run)
        # When the leaving site's first round came back, its data manager takes it out
        deadline = time.monotonic() + JOB_S
        while not FederationRound.objects.filter(site=leaving, number=1, received_at__isnull=False).exists():
            run.refresh_from_db()
            if run.status == "failed" or time.monotonic() > deadline:
                jobs.join(60, run)
                pytest.fail(f"round 1 never reached the leaving site: run {run.status} {run.error}")
            time.sleep(0.5)
        federation_site_leave(
            actor=sites[2].manager, site=leaving, reason="our ethics board paused the study"
        )
        jobs.join(JOB_S, run)
    assert not jobs.errors, jobs.errors
    run.refresh_from_db()
    assert run.status == "done", run.error

    # The coordinator: round 1 aggregated from all three sites' sample counts, round 2 from the
    # two that stayed
    assert [h["round"] for h in run.history] == [1, 2]
    took_part = {1: sorted(m.pk for m in members), 2: sorted(m.pk for m in members[:2])}
    for entry in run.history:
        assert sorted(p["site"] for p in entry["participants"]) == took_part[entry["round"]]
        assert all(
            p["samples"] >= 1 and p["bytes"] > 0 and len(p["sha256"]) == 64 for p in entry["participants"]
        )
        # The scan classifier's parameters travel in the same update as the segmenter's
        assert all(p["bytes"] > segmenter_bytes for p in entry["participants"])

    leaving.refresh_from_db()
    assert leaving.status == "left" and leaving.left_reason == "our ethics board paused the study"
    assert AuditEvent.objects.filter(action="federation_site_leave", object_id=str(leaving.pk)).exists()
    for site, member in zip(sites, members, strict=True):
        member.refresh_from_db()
        numbers = [1] if member.pk == leaving.pk else [1, 2]
        if member.pk != leaving.pk:
            assert member.status == "done", (member.status, member.error)
        rounds = list(FederationRound.objects.filter(site=member).order_by("number"))
        assert [r.number for r in rounds] == numbers
        for r in rounds:
            entry = run.history[r.number - 1]
            # What left the site is what reached the coordinator, byte for byte
            arrived = next(p for p in entry["participants"] if p["site"] == member.pk)
            assert (r.sent_bytes, r.sent_sha256, r.sample_count) == (
                arrived["bytes"],
                arrived["sha256"],
                arrived["samples"],
            )
            assert r.sent_to == run.superlink_address and r.sent_at is not None
            # What came back: the round's global model, a model version of the site's campaign
            version = r.model_version
            assert version.campaign_id == site.campaign.pk and version.trained_on_id == site.export.pk
            lineage = version.metrics["federation"]
            assert lineage["federation_run"] == run.pk and lineage["round"] == r.number
            assert lineage["parameter_sha256"] == r.global_sha256
            assert sorted(p["site"] for p in lineage["participants"]) == took_part[r.number]
            assert version.metrics["candidate"]["mean"] is not None and version.metrics["test_cases"] >= 1
            settings.MEDIA_ROOT = site.media
            assert file_sha256(Path(site.media) / version.file_path) == version.sha256
            # ... and the round's global scan classifier, tested on the site's own test split
            classifier = version.metrics["classifier"]
            assert classifier["trained"] and classifier["classes"] == [
                "COVID-19",
                "other pulmonary infection",
                "no imaging signs of infection",
            ]
            assert (
                classifier["train_cases"] >= 1
                and classifier["candidate"]["cases"] == classifier["test_cases"]
            )
            assert r.test_figures["classifier"]["trained"]
            assert file_sha256(Path(site.media) / version.classifier_file_path) == version.classifier_sha256
            assert r.decision and r.promoted is not None
        # Governance: an audit event per round of what left, to whom, when, under which run;
        # nothing more left the site that left
        sent = AuditEvent.objects.filter(action="federation_update_sent", campaign=site.campaign).order_by(
            "pk"
        )
        assert [e.details["round"] for e in sent] == numbers
        for event, r in zip(sent, rounds, strict=True):
            assert event.details["bytes"] == r.sent_bytes and event.details["sha256"] == r.sent_sha256
            assert event.details["coordinator"] == run.superlink_address and event.details["run_key"] == str(
                run.key
            )
            assert event.details["sample_count"] == r.sample_count
        received = AuditEvent.objects.filter(action="federation_model_received", campaign=site.campaign)
        assert received.count() == len(numbers)
        # A site promotes by its own rule: at most one active version, and only a promoted one
        active = ModelVersion.objects.filter(campaign=site.campaign, is_active=True)
        assert active.count() <= 1
        assert all(FederationRound.objects.get(site=member, model_version=v).promoted for v in active)
    # The same global model reached every site in a round
    for number in (1, 2):
        assert (
            len({r.global_sha256 for r in FederationRound.objects.filter(number=number, site__run=run)}) == 1
        )

    # No site's process opened another site's files; each read its own export
    for site in sites:
        opened, received = _opened(root, site.slug)
        assert opened and all(path.startswith(str(site.media) + "/") for path in opened), opened
        assert any("/exports/" in p for p in opened)
        assert received == {"arrays ArrayRecord", "config ConfigRecord"}, received

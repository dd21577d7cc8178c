"""Federated retraining with secure aggregation (#15 §3: Flower's SecAgg+, switchable per run):
a SuperLink and three SuperNodes on loopback, each bound to its own site, through the real
services and Flower's real deployment processes, with the SecAgg+ Flower App
(federation/flower/flower_app_secagg: the legacy DefaultWorkflow + SecAggPlusWorkflow on the
coordinator, `secaggplus_mod` on every site).

Each site keeps its own unmasked update in its own data folder (a test-only hook of the
ClientApp), so the test can check that what the coordinator made of the masked vectors is the
sample-weighted mean of the updates, although it only ever received masked vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.federation.sites import TINY_TRAIN, Jobs, make_site, no_flower_left

pytestmark = pytest.mark.django_db(transaction=True)
JOB_S = 900.0  # as the plain loopback test: finite so a hang fails


def _mean_tolerance(samples: list[int]) -> float:
    """How far the unmasked mean may be from the exact sample-weighted mean, by SecAgg+'s
    arithmetic: each site's weighted parameters (count / max_weight x p) are rounded to a step of
    2 x clipping_range / Q (stochastically: less than one step), the sum of the sites' errors is
    divided by the summed weights, and the global model is cast back to float32 (half an ulp of a
    parameter below 1: 3e-8). Twice that, for margin. The float32 shift this once went through
    (before federation.flower.secagg_client.widen_mod) was off by 2.3e-3, thirty times more."""
    from federation.flower.secagg_client import MAX_WEIGHT
    from federation.flower.secagg_server import secagg_settings

    settings = secagg_settings(len(samples))
    step = 2 * settings["clipping_range"] / settings["quantization_range"]
    return 2 * (len(samples) * step / (sum(samples) / MAX_WEIGHT) + 3e-8)


@pytest.fixture(autouse=True)
def _small_test_split(settings):
    settings.CURATECT_MIN_TEST_CASES = 1  # four patients per site: one test case


@pytest.fixture
def hospitals(cast, settings, tmp_path):
    root = tmp_path / "sites"
    root.mkdir()
    return [
        make_site(settings, root, tmp_path / "sources", "alpha", seed=0, cast=cast),
        make_site(settings, root, tmp_path / "sources", "bravo", seed=10),
        make_site(settings, root, tmp_path / "sources", "charlie", seed=20),
    ]


def _declare(cast, **kw):
    from federation.processes import free_port
    from federation.services.runs import federation_run_declare

    options = {
        "actor": cast.manager,
        "institution": cast.institution,
        "campaign": cast.campaign,
        "name": "three hospitals, masked",
        "superlink_address": f"127.0.0.1:{free_port()}",
        "architecture": "unet2d-tiny",
        "rounds": 1,  # one round: SecAgg+ starts a ClientApp process per stage, four per round
        "local_epochs": 1,
        "min_sites": 3,
        "train_params": TINY_TRAIN,
        "secagg_enabled": True,
    }
    return federation_run_declare(**{**options, **kw})


def _run(settings, sites, run) -> list:
    from federation.services.runs import federation_run_execute, federation_run_start
    from federation.services.sites import federation_site_join, federation_site_serve, federation_site_start

    members = [federation_site_join(actor=s.manager, run=run, export=s.export) for s in sites]
    jobs = Jobs()
    with no_flower_left(settings.DATA_DIR):
        for member in members:
            federation_site_start(actor=None, site=member)
        federation_run_start(actor=members[0].joined_by, run=run)
        jobs.start(federation_run_execute, run.pk, worker="coordinator")
        for site, member in zip(sites, members, strict=True):
            env = {
                "CURATECT_MEDIA_ROOT": str(site.media),
                "CURATECT_FEDERATION_KEEP_UPDATES": str(site.media / "kept-updates"),
            }
            jobs.start(federation_site_serve, member.pk, worker=f"train@{site.slug}", extra_env=env)
        jobs.join(JOB_S, run)
    assert not jobs.errors, jobs.errors
    run.refresh_from_db()
    assert run.status == "done", run.error
    return members


def _kept(site, number: int) -> tuple[list[np.ndarray], int]:
    with np.load(site.media / "kept-updates" / f"round-{number}.npz") as data:
        arrays = [data[f"arr_{i}"] for i in range(len(data.files) - 1)]
        return arrays, int(data["num_examples"])


def _global(settings, site, version) -> list[np.ndarray]:
    import torch

    settings.MEDIA_ROOT = site.media
    payload = torch.load(Path(site.media) / version.file_path, map_location="cpu", weights_only=True)
    return [v.numpy() for v in payload["state_dict"].values()]


def _weighted_mean(updates: list[tuple[list[np.ndarray], int]]) -> list[np.ndarray]:
    total = sum(n for _, n in updates)
    return [
        sum(arrays[i].astype(np.float64) * n for arrays, n in updates) / total
        for i in range(len(updates[0][0]))
    ]


def test_three_sites_with_secagg_and_dp_send_only_clipped_masked_vectors(cast, settings, hospitals):
    """One run of SecAgg+ with DP (each Flower run costs minutes here, so one run shows both):
    client-side fixed clipping (Flower's fixedclipping_mod) runs inside secaggplus_mod, so each
    site's update is clipped to the norm, then masked; the coordinator's DP wrapper adds the noise
    (none here, so the mean can be checked) to the unmasked sum."""
    from core.models import AuditEvent
    from federation import training
    from federation.flower.secagg_client import arrays_digest
    from federation.models import FederationRound

    clip = 0.05
    run = _declare(cast, dp_enabled=True, dp_noise_multiplier=0.0, dp_clipping_norm=clip)
    members = _run(settings, hospitals, run)

    # The coordinator aggregated the round from all three sites' masked vectors
    assert [h["round"] for h in run.history] == [1]
    for entry in run.history:
        assert "SecAgg+" in entry["secure_aggregation"]
        assert sorted(p["site"] for p in entry["participants"]) == sorted(m.pk for m in members)
        assert all(p["masked"] and p["samples"] >= 1 for p in entry["participants"])
        # Named as on the plain path: by the run-wide site key and the institution, in that order
        # (a site of another installation has no row id at the coordinator)
        named = {p["site"]: (p["site_key"], p["institution"]) for p in entry["participants"]}
        assert named == {
            m.pk: (str(m.key), s.institution.name) for m, s in zip(members, hospitals, strict=True)
        }
        assert [p["institution"] for p in entry["participants"]] == sorted(
            s.institution.name for s in hospitals
        )
    assert (
        run.history
        and "SecAgg+" in AuditEvent.objects.get(action="federation_run_done").details["secure_aggregation"]
    )

    initial = [
        v.numpy().astype(np.float64) for v in training.initial_model("unet2d-tiny", 0).state_dict().values()
    ]
    for number, entry in zip((1,), run.history, strict=True):
        rows = {r.site_id: r for r in FederationRound.objects.filter(site__run=run, number=number)}
        assert sorted(rows) == sorted(m.pk for m in members)
        kept = {}
        for site, member in zip(hospitals, members, strict=True):
            r = rows[member.pk]
            arrays, samples = _kept(site, number)
            kept[member.pk] = (arrays, samples)
            # The site trained, and its update was clipped to the norm before it was masked
            moved = [a - i for a, i in zip(arrays, initial, strict=True)]
            norm = np.sqrt(sum(float((d**2).sum()) for d in moved))
            assert max(float(np.abs(d).max()) for d in moved) > 1e-6, "the site did not train"
            assert norm <= clip * (1 + 1e-4), norm
            # What left is the masked vector, and what reached the coordinator is that vector
            arrived = next(p for p in entry["participants"] if p["site"] == member.pk)
            assert (r.sent_bytes, r.sent_sha256, r.sample_count) == (
                arrived["bytes"],
                arrived["sha256"],
                arrived["samples"],
            )
            assert r.sample_count == samples
            sent = AuditEvent.objects.get(action="federation_update_sent", object_id=str(r.pk))
            assert "masked" in sent.details["what"] and sent.details["secagg"]["protocol"] == "SecAgg+"
            assert sent.details["sha256"] == r.sent_sha256 and sent.details["run_key"] == str(run.key)
            assert sent.details["dp"]["clipping_norm"] == clip
            # ...and it is not the update: that stayed here (its digest recorded beside it)
            update_bytes, update_sha = arrays_digest(arrays)
            assert sent.details["secagg"]["update_sha256"] == update_sha != r.sent_sha256
            assert sent.details["secagg"]["update_bytes"] == update_bytes != r.sent_bytes
            # The round's global model is registered at the site with lineage and its own figures
            version = r.model_version
            assert version.campaign_id == site.campaign.pk and version.trained_on_id == site.export.pk
            lineage = version.metrics["federation"]
            assert lineage["round"] == number and lineage["secure_aggregation"] == "SecAgg+"
            assert lineage["parameter_sha256"] == r.global_sha256
            assert sorted(p["site"] for p in lineage["participants"]) == sorted(m.pk for m in members)
            assert sorted(p["site_key"] for p in lineage["participants"]) == sorted(
                str(m.key) for m in members
            )
            assert r.decision and r.promoted is not None and version.metrics["test_cases"] >= 1
            # SecAgg+ runs train the segmenter only (its quantisation range does not hold the
            # classifier's batch-norm statistics), and say so
            assert version.metrics["classifier"]["trained"] is False
            assert "secure aggregation" in version.metrics["classifier"]["reason"]
            assert not version.classifier_file_path
        # Every site got the same global model: the sample-weighted mean of the three updates
        assert len({r.global_sha256 for r in rows.values()}) == 1
        site, member = hospitals[0], members[0]
        global_arrays = _global(settings, site, rows[member.pk].model_version)
        expected = _weighted_mean(list(kept.values()))
        atol = _mean_tolerance([n for _, n in kept.values()])
        for got, want in zip(global_arrays, expected, strict=True):
            np.testing.assert_allclose(got, want, atol=atol, rtol=0)
        # The masked vectors are not the parameters: a plain mean of them is nowhere near
        assert len({r.sent_sha256 for r in rows.values()}) == 3


@pytest.mark.parametrize("min_sites", [1, 2])
def test_declare_refuses_secagg_with_fewer_than_three_sites(cast, min_sites):
    from core.api_errors import DomainError
    from federation.models import FederationRun

    with pytest.raises(DomainError) as refused:
        _declare(cast, min_sites=min_sites)
    assert refused.value.code == "secagg_too_few_sites" and "at least 3" in str(refused.value)
    assert not FederationRun.objects.exists()

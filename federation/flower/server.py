"""The coordinator's ServerApp: Flower's FedAvg (default), FedProx or FedAvgM, optionally wrapped in
Flower's central DP with client-side fixed clipping (Gaussian noise on the aggregate, the
clipping done by each site's `fixedclipping_mod`). Each aggregated round is recorded on the
coordinator's run: which sites took part with how many samples, what arrived (bytes, sha256).
The evaluation messages of a round carry those participants to every site as lineage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg, FedAvgM, FedProx

from federation.flower.django_setup import ensure_django
from federation.flower.momentum import forget_first_round

app = ServerApp()

SITE_KEY = "curatect-site-id"
RUN_KEY = "curatect-run"
NAME_RECORD = "curatect-site"  # the ClientApp's name of itself: site key, institution name


def _participant(run_id: int, reply: Message) -> dict[str, Any]:
    """A site by what its ClientApp reports: a site of another installation has no row here,
    so `site` (this installation's row) is None for it and its key and name say who it was."""
    from federation.models import FederationSite
    from federation.training import arrays_digest

    metrics = reply.content["metrics"]
    named = reply.content.config_records.get(NAME_RECORD)
    key = str(named["site-key"]) if named else ""
    local = FederationSite.objects.filter(run_id=run_id, key=key).values_list("pk", flat=True).first()
    size, digest = arrays_digest(reply.content["arrays"].to_numpy_ndarrays())
    return {
        "site": local if named else int(metrics[SITE_KEY]),
        "site_key": key,
        "institution": str(named["institution"]) if named else "",
        "node": int(reply.metadata.src_node_id),
        "samples": int(metrics["num-examples"]),
        "bytes": size,
        "sha256": digest,
    }


def _order(participant: dict[str, Any]) -> tuple[str, str]:
    return participant["institution"], participant["site_key"]


class _Recorded:
    """Mixed into Flower's strategy: records each round at the coordinator and tells the sites
    who took part. The first round waits (up to the round timeout) for every site that joined."""

    run_id: int
    expected_sites: int
    wait_s: float
    participants: list[dict[str, Any]]

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid):
        if server_round == 1:
            deadline = time.monotonic() + self.wait_s
            while len(list(grid.get_node_ids())) < self.expected_sites and time.monotonic() < deadline:
                time.sleep(1.0)
        return super().configure_train(server_round, arrays, config, grid)  # type: ignore[misc]

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        from federation.services.runs import federation_run_round_record

        replies = list(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)  # type: ignore[misc]
        ok = [r for r in replies if not r.has_error()]
        if len(ok) < self.min_train_nodes:  # type: ignore[attr-defined]
            # Flower would carry the old model into the next round; a run that lost its
            # quorum stops and says why instead.
            errors = "; ".join(sorted({str(r.error.reason)[:300] for r in replies if r.has_error()}))
            raise RuntimeError(
                f"round {server_round}: {len(ok)} of {len(replies)} sites returned an update, fewer than the "
                f"run's minimum of {self.min_train_nodes}" + (f" ({errors})" if errors else "")  # type: ignore[attr-defined]
            )
        self.participants = sorted((_participant(self.run_id, r) for r in ok), key=_order)
        federation_run_round_record(
            self.run_id,
            server_round,
            self.participants,
            failed_replies=len(replies) - len(ok),
            aggregated=arrays is not None,
        )
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid):
        config["participants"] = json.dumps(
            [{k: p[k] for k in ("site", "site_key", "institution", "samples")} for p in self.participants]
        )
        return super().configure_evaluate(server_round, arrays, config, grid)  # type: ignore[misc]


class RecordedFedAvg(_Recorded, FedAvg):
    pass


class RecordedFedProx(_Recorded, FedProx):
    pass


class RecordedFedAvgM(_Recorded, FedAvgM):
    """Flower's FedAvgM with its momentum started in round 2 (momentum.forget_first_round)."""

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        arrays, metrics = super().aggregate_train(server_round, replies)
        if server_round == 1:
            forget_first_round(self)
        return arrays, metrics


def build_strategy(run: Any, expected_sites: int) -> Any:
    """The run's strategy, as declared: FedAvg, FedProx or FedAvgM, DP-wrapped when switched on."""
    nodes = {
        "min_train_nodes": run.min_sites,
        "min_evaluate_nodes": run.min_sites,
        "min_available_nodes": run.min_sites,
    }
    if run.strategy == "fedprox":
        strategy: Any = RecordedFedProx(proximal_mu=run.proximal_mu, **nodes)
    elif run.strategy == "fedavgm":
        strategy = RecordedFedAvgM(server_momentum=run.server_momentum, **nodes)
    else:
        strategy = RecordedFedAvg(**nodes)
    strategy.run_id, strategy.expected_sites, strategy.participants = run.pk, expected_sites, []
    strategy.wait_s = float(run.round_timeout_s)
    if run.dp_enabled:
        return DifferentialPrivacyClientSideFixedClipping(
            strategy,
            run.dp_noise_multiplier,
            run.dp_clipping_norm,
            num_sampled_clients=max(expected_sites, 1),
        )
    return strategy


def _plain(records: dict) -> dict[str, dict[str, float]]:
    return {
        str(k): {m: float(v) for m, v in dict(r).items() if isinstance(v, int | float)}
        for k, r in records.items()
    }


@app.main()
def main(grid: Grid, context: Context) -> None:
    ensure_django()
    from federation.models import FederationRun, SiteStatus
    from federation.services.runs import federation_run_abort, federation_run_finish

    run = FederationRun.objects.get(pk=int(context.run_config["curatect-run-id"]))
    # Sites of other installations joined at their own sites, unseen here: at least min_sites.
    local = run.sites.filter(status__in=[SiteStatus.QUEUED, SiteStatus.RUNNING, SiteStatus.JOINED]).count()
    expected = max(run.min_sites, local)
    strategy = build_strategy(run, expected)
    try:
        result = _start(strategy, grid, run)
    except Exception as exc:
        federation_run_abort(run.pk, exc)
        raise
    federation_run_finish(
        run.pk,
        {
            "train_metrics": _plain(result.train_metrics_clientapp),
            "evaluate_metrics": _plain(result.evaluate_metrics_clientapp),
        },
    )


def _start(strategy: Any, grid: Grid, run: Any) -> Any:
    from federation import classifier as scan_classifier
    from federation import training

    seed = int(run.train_params.get("seed", 0))
    state = training.initial_model(run.architecture, seed).state_dict()
    spec = scan_classifier.classifier_spec(run)
    if spec is not None:  # the scan classifier travels in the same update (federation.classifier)
        state = scan_classifier.joined_state(
            state, scan_classifier.initial_classifier(spec, seed).state_dict()
        )
    initial = ArrayRecord(state)
    common = {RUN_KEY: str(run.key), "num-rounds": run.rounds}
    return strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=run.rounds,
        timeout=float(run.round_timeout_s),
        train_config=ConfigRecord({**common, "local-epochs": run.local_epochs}),
        evaluate_config=ConfigRecord(common),
    )

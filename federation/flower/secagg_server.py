"""The coordinator's ServerApp for runs with secure aggregation (Flower's SecAgg+).

In Flower 1.41 SecAgg+ exists only for the legacy API: a `SecAggPlusWorkflow` as the fit workflow
of a `DefaultWorkflow`, run with a `LegacyContext` and a legacy strategy (FedAvg, FedProx with
its mu, or FedAvgM with its server momentum; optionally in Flower's DP wrapper with client-side
fixed clipping). The sites run federation.flower.secagg_client (with `secaggplus_mod`).

Weighting: each site multiplies its parameters by sample count / max_weight before quantising
and masking, and sends that weight (masked too) with them; the workflow divides the unmasked sum
by the summed weights, which is FedAvg's sample-weighted mean. It then hands that one vector to
the strategy as every site's result, so the strategy's own weighted mean changes nothing.

What the coordinator records per round: which sites took part with how many samples (the
counts travel in clear, as on the plain path), and what arrived from each: its masked vector's
size and sha256, which equal what the site recorded as sent. It never sees a site's update.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Context, Message
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg, FedAvgM, FedProx
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp import Grid, ServerApp

from federation.flower.django_setup import ensure_django
from federation.flower.momentum import forget_first_round
from federation.flower.secagg_client import (
    INSTITUTION_KEY,
    MAX_WEIGHT,
    RUN_KEY,
    SITE_KEY,
    SITE_NAME_KEY,
    chunks_digest,
)

app = ServerApp()

MIN_SITES = 3  # with two, each site could subtract its own update from the sum and read the other's
MODULUS = 2**32  # Flower's largest mask range
CLIPPING_RANGE = 8.0  # |weight share x parameter| above it is clipped; conv weights are far below


def secagg_settings(expected_sites: int) -> dict[str, Any]:
    """SecAgg+'s parameters for a run of `expected_sites`.

    Every site's quantised value lies in [0, Q] and the masked vectors are summed modulo 2**32,
    so n x Q must stay below 2**32 or the sum wraps; Flower's stochastic rounding casts to int32,
    so Q <= 2**30. The larger Q, the finer the quantisation (a step of 2 x 8 / Q on each site's
    weighted parameters). Every site holds a share of every other's secrets (num_shares = all),
    and a majority of them (at least 2) reconstructs a secret: the sum survives the loss of the
    minority of sites mid-round.
    """
    n = max(expected_sites, 1)
    quantization = min(2**30, 2 ** math.floor(math.log2((MODULUS - 1) / n)))
    return {
        "num_shares": 1.0,  # a proportion: every sampled site
        "reconstruction_threshold": max(2, n // 2 + 1),
        "max_weight": float(MAX_WEIGHT),
        "clipping_range": CLIPPING_RANGE,
        "quantization_range": quantization,
        "modulus_range": MODULUS,
    }


@dataclass
class Ledger:
    """What the workflow and the strategy of one run share: what arrived from each node, and
    which rounds were aggregated."""

    arrived: dict[int, tuple[int, str]] = field(default_factory=dict)  # node id -> (bytes, sha256)
    aggregated: set[int] = field(default_factory=set)


class _ArrivalGrid:
    """The grid, noting the size and sha256 of each masked vector as it arrives."""

    def __init__(self, grid: Grid, ledger: Ledger) -> None:
        self._grid, self._ledger = grid, ledger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None):
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for reply in replies:
            if not reply.has_error():
                masked = reply.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]
                self._ledger.arrived[reply.metadata.src_node_id] = chunks_digest(masked)  # type: ignore[arg-type]
        return replies


class RecordedSecAggPlusWorkflow(SecAggPlusWorkflow):
    """Flower's SecAgg+ fit workflow, which stops the run with its reason where Flower's only
    logs "Secure aggregation halted." and carries the old model into the round's evaluation."""

    def __init__(self, ledger: Ledger, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ledger = ledger

    def __call__(self, grid: Grid, context: Context) -> None:
        assert isinstance(context, LegacyContext)
        number = int(context.state.config_records[MAIN_CONFIGS_RECORD][WorkflowKey.CURRENT_ROUND])  # type: ignore[arg-type]
        state = WorkflowState()
        self.ledger.arrived.clear()
        for name, step in (
            ("setup", self.setup_stage),
            ("key sharing", self.share_keys_stage),
            ("masked vectors", self.collect_masked_vectors_stage),
            ("unmasking", self.unmask_stage),
        ):
            if not step(grid, context, state):
                raise RuntimeError(
                    f"round {number}: secure aggregation stopped at its {name} stage: {_why(state)}"
                )
        if number not in self.ledger.aggregated:
            raise RuntimeError(f"round {number}: the sum was unmasked but not aggregated: {_why(state)}")

    def collect_masked_vectors_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:
        return super().collect_masked_vectors_stage(_ArrivalGrid(grid, self.ledger), context, state)  # type: ignore[arg-type]


def _why(state: WorkflowState) -> str:
    sampled = len(state.sampled_node_ids)
    text = (
        f"{len(state.active_node_ids)} of {sampled} sites answered, the reconstruction threshold is "
        f"{state.threshold}"
        if sampled
        else "fewer than two sites were available"
    )
    errors = sorted({str(getattr(e.args[0], "reason", e))[:300] for e in state.failures if e.args})
    return text + (f" ({'; '.join(errors)})" if errors else "")


class _Recorded:
    """Mixed into Flower's legacy strategy: waits for the sites in round 1, refuses a round below
    the run's minimum, records each aggregated round at the coordinator, and tells the sites who
    took part."""

    run_id: int
    expected_sites: int
    wait_s: float
    ledger: Ledger
    template: list[np.ndarray]
    participants: list[dict[str, Any]]
    min_fit_clients: int

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any):
        deadline = time.monotonic() + (self.wait_s if server_round == 1 else 0.0)
        while client_manager.num_available() < self.expected_sites and time.monotonic() < deadline:
            time.sleep(1.0)
        available = client_manager.num_available()
        if available < self.min_fit_clients:
            # Flower would wait a day for them; the run stops and says why instead.
            raise RuntimeError(
                f"round {server_round}: {available} sites connected, fewer than the run's minimum of "
                f"{self.min_fit_clients} for secure aggregation"
            )
        return super().configure_fit(server_round, parameters, client_manager)  # type: ignore[misc]

    def aggregate_fit(self, server_round: int, results: list, failures: list):
        from federation.services.runs import federation_run_round_record

        if len(results) < self.min_fit_clients:
            raise RuntimeError(
                f"round {server_round}: {len(results)} sites' masked updates were summed, fewer than the run's "
                f"minimum of {self.min_fit_clients}; with fewer, a site could read another's update from the sum"
            )
        parameters, metrics = super().aggregate_fit(server_round, results, failures)  # type: ignore[misc]
        if parameters is not None:
            # The unmasked sum comes back as float64: the global model keeps the model's dtypes.
            arrays = parameters_to_ndarrays(parameters)
            parameters = ndarrays_to_parameters(
                [
                    np.asarray(a).astype(t.dtype, copy=False)
                    for a, t in zip(arrays, self.template, strict=True)
                ]
            )
        self.participants = sorted(
            (self._participant(proxy.node_id, fitres) for proxy, fitres in results),
            key=lambda p: (p["institution"], p["site_key"]),
        )
        federation_run_round_record(
            self.run_id,
            server_round,
            self.participants,
            failed_replies=len(failures),
            aggregated=parameters is not None,
            secure_aggregation="SecAgg+: the coordinator unmasked only the sum of the sites' weighted updates",
        )
        if parameters is not None:
            self.ledger.aggregated.add(server_round)
        return parameters, metrics

    def _participant(self, node_id: int, fitres: Any) -> dict[str, Any]:
        """A site by what its ClientApp reports, as on the plain path (server._participant): its
        run-wide key and institution; `site` is this installation's row, None for another's."""
        from federation.models import FederationSite

        key = str(fitres.metrics.get(SITE_NAME_KEY, ""))
        local = (
            FederationSite.objects.filter(run_id=self.run_id, key=key).values_list("pk", flat=True).first()
        )
        return {
            "site": local if key else int(fitres.metrics[SITE_KEY]),
            "site_key": key,
            "institution": str(fitres.metrics.get(INSTITUTION_KEY, "")),
            "node": int(node_id),
            "samples": int(fitres.num_examples),
            "bytes": self.ledger.arrived[node_id][0],
            "sha256": self.ledger.arrived[node_id][1],
            "masked": True,
        }

    def configure_evaluate(self, server_round: int, parameters: Any, client_manager: Any):
        pairs = super().configure_evaluate(server_round, parameters, client_manager)  # type: ignore[misc]
        lineage = json.dumps(
            [{k: p[k] for k in ("site", "site_key", "institution", "samples")} for p in self.participants]
        )
        for _, ins in pairs:
            ins.config["participants"] = lineage
        return pairs


class RecordedFedAvg(_Recorded, FedAvg):
    pass


class RecordedFedProx(_Recorded, FedProx):
    pass


class RecordedFedAvgM(_Recorded, FedAvgM):
    """Flower's legacy FedAvgM with its momentum started in round 2 (momentum.forget_first_round)."""

    def aggregate_fit(self, server_round: int, results: list, failures: list):
        parameters, metrics = super().aggregate_fit(server_round, results, failures)
        if server_round == 1:
            forget_first_round(self)
        return parameters, metrics


def _sample_weighted_mean(metrics: list[tuple[int, dict[str, Any]]]) -> dict[str, float]:
    # The sites' own test figures (computed by annotation.dice at each site), weighted by samples.
    total = sum(n for n, _ in metrics)
    if not total:
        return {}
    return {"dice-mean": sum(n * float(m.get("dice-mean", 0.0)) for n, m in metrics) / total}


def build_strategy(run: Any, expected_sites: int, ledger: Ledger) -> Any:
    """The run's legacy strategy, as declared: FedAvg, FedProx or FedAvgM, DP-wrapped when switched on."""
    from federation import training

    template = [
        v.detach().cpu().numpy()
        for v in training.initial_model(run.architecture, _seed(run)).state_dict().values()
    ]
    common = {RUN_KEY: str(run.key), "num-rounds": run.rounds}
    options = {
        "fraction_fit": 1.0,
        "fraction_evaluate": 1.0,
        "min_fit_clients": run.min_sites,
        "min_evaluate_clients": run.min_sites,
        "min_available_clients": run.min_sites,
        "initial_parameters": ndarrays_to_parameters(template),
        "on_fit_config_fn": lambda r: {**common, "server-round": r, "local-epochs": run.local_epochs},
        "on_evaluate_config_fn": lambda r: {**common, "server-round": r},
        "evaluate_metrics_aggregation_fn": _sample_weighted_mean,
    }
    if run.strategy == "fedprox":
        strategy: Any = RecordedFedProx(proximal_mu=run.proximal_mu, **options)
    elif run.strategy == "fedavgm":
        strategy = RecordedFedAvgM(server_momentum=run.server_momentum, **options)
    else:
        strategy = RecordedFedAvg(**options)
    strategy.run_id, strategy.expected_sites, strategy.ledger = run.pk, expected_sites, ledger
    strategy.wait_s, strategy.template, strategy.participants = float(run.round_timeout_s), template, []
    if run.dp_enabled:
        return DifferentialPrivacyClientSideFixedClipping(
            strategy,
            run.dp_noise_multiplier,
            run.dp_clipping_norm,
            num_sampled_clients=max(expected_sites, 1),
        )
    return strategy


def _seed(run: Any) -> int:
    return int(run.train_params.get("seed", 0))


@app.main()
def main(grid: Grid, context: Context) -> None:
    ensure_django()
    from federation.models import FederationRun, SiteStatus
    from federation.services.runs import federation_run_abort, federation_run_finish

    run = FederationRun.objects.get(pk=int(context.run_config["curatect-run-id"]))
    expected = run.sites.filter(status__in=[SiteStatus.QUEUED, SiteStatus.RUNNING, SiteStatus.JOINED]).count()
    ledger = Ledger()
    legacy = LegacyContext(
        context, config=ServerConfig(num_rounds=run.rounds), strategy=build_strategy(run, expected, ledger)
    )
    workflow = DefaultWorkflow(
        fit_workflow=RecordedSecAggPlusWorkflow(
            ledger, **secagg_settings(expected), timeout=float(run.round_timeout_s)
        )
    )
    try:
        workflow(grid, legacy)
    except Exception as exc:
        federation_run_abort(run.pk, exc)
        raise
    federation_run_finish(
        run.pk,
        {
            "secure_aggregation": "SecAgg+",
            "evaluate_loss": [[r, float(v)] for r, v in legacy.history.losses_distributed],
            "evaluate_metrics": {
                k: [[r, float(v)] for r, v in values]
                for k, values in legacy.history.metrics_distributed.items()
            },
        },
    )

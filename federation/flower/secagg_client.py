"""A site's ClientApp for runs with secure aggregation (Flower's SecAgg+).

In Flower 1.41 SecAgg+ exists only for the legacy API, so this is a `client_fn` ClientApp with a
NumPyClient, wrapped in Flower's `secaggplus_mod`. The site trains and tests exactly as on the
plain path (federation.training, federation.services.rounds); what differs is what leaves:
`secaggplus_mod` multiplies the trained parameters by the sample count, quantises them, adds
masks that cancel only in the sum of all sites' vectors, and sends that masked vector. The
coordinator can unmask only the sum, never one site's update.

Mods, outermost first:
- `outgoing_record_mod` writes the governance record of the masked vector exactly as it leaves
  (its size and sha256), beside the sha256 of the site's own unmasked update, which stays here;
  in SecAgg+'s first stage it refuses to take part for a site that is not serving the run;
- `secaggplus_mod` (Flower) runs the protocol's four stages: public keys, encrypted key
  shares, the masked vector (only this stage trains), the shares that unmask the sum;
- `widen_mod` hands secaggplus_mod the update in float64, so its scaling and shift lose nothing;
- `update_note_mod` notes the unmasked update's digest in the node's own context (never sent);
- `dp_clipping_mod`: Flower's `fixedclipping_mod` when the run's DP wrapper asked for clipping,
  so the update is clipped before it is masked (client-side clipping + SecAgg+ + central noise).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MessageType
from flwr.client import NumPyClient
from flwr.client.mod import fixedclipping_mod, secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat

from federation.flower.django_setup import ensure_django

SITE_KEY = "curatect-site-id"  # the site's row in its own installation (node config)
# What a site calls itself in its replies: the run-wide site key and its institution's name. The
# coordinator may be another installation, where the site's own row id means nothing.
SITE_NAME_KEY, INSTITUTION_KEY = "curatect-site-key", "curatect-institution"
RUN_KEY = "curatect-run"
CLIPPING_NORM_KEY = "clipping_norm"  # what Flower's DP wrapper puts in the fit config
UPDATE_KEY = "curatect.update"  # the unmasked update's digest, in the node's own context state
# The largest training sample count a site may weight its update with: secaggplus_mod scales
# the parameters by count / max_weight before quantising, so a count above it would be clipped.
MAX_WEIGHT = 10_000
# Test-only: with CURATECT_FEDERATION_KEEP_UPDATES naming a folder (the site's own), each round's
# unmasked update is kept there, so a test can check the coordinator's unmasked sum against it.
_KEEP = os.environ.get("CURATECT_FEDERATION_KEEP_UPDATES", "")


def chunks_digest(chunks: Iterable[bytes]) -> tuple[int, str]:
    """(bytes, sha256) of a list of byte strings as they travel, in order."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def arrays_digest(arrays: Sequence[np.ndarray]) -> tuple[int, str]:
    """As federation.training.arrays_digest (each array's raw bytes), without Django."""
    return chunks_digest(np.ascontiguousarray(a).tobytes() for a in arrays)


def parameter_names(architecture: str) -> list[str]:
    """The legacy API carries a list of arrays: the architecture's state-dict order names them."""
    from modelassist.lazy import network

    return list(network.build_model(architecture).state_dict().keys())


def _serving(context: Context, run_key: str | None = None) -> Any:
    ensure_django()
    from federation.models import FederationSite
    from federation.services.rounds import site_serving

    site_id = int(context.node_config[SITE_KEY])
    if run_key is None:  # SecAgg+'s first stage carries no run key: the run this site joined
        run_key = str(FederationSite.objects.values_list("run__key", flat=True).get(pk=site_id))
    return site_serving(site_id, run_key)


def _named(site: Any) -> dict[str, Any]:
    return {SITE_KEY: site.pk, SITE_NAME_KEY: str(site.key), INSTITUTION_KEY: site.institution.name}


_cases: dict[int, Any] = {}


def _site_cases(site: Any) -> Any:
    from federation import training

    if site.export_id not in _cases:
        _cases[site.export_id] = training.load_cases(site.export)
    return _cases[site.export_id]


class SiteClient(NumPyClient):
    """The site's training and testing, as the legacy API calls them."""

    def __init__(self, node_context: Context) -> None:
        self.node_context = node_context

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]):
        ensure_django()
        import torch

        from federation import training
        from modelassist.models import Split

        site = _serving(self.node_context, str(config[RUN_KEY]))
        run = site.run
        cases = _site_cases(site)
        samples = len(cases[Split.TRAIN])
        if samples > MAX_WEIGHT:
            from core.api_errors import DomainError

            raise DomainError(
                f"this site trains on {samples} scans; secure aggregation weighs updates by at most "
                f"{MAX_WEIGHT} (federation.flower.secagg_client.MAX_WEIGHT)",
                code="secagg_weight",
            )
        names = parameter_names(run.architecture)
        started = time.monotonic()
        model, history = training.train_local(
            cases,
            architecture=run.architecture,
            epochs=int(config.get("local-epochs", run.local_epochs)),
            params=run.train_params,
            initial_state={k: torch.as_tensor(np.asarray(v)) for k, v in zip(names, parameters, strict=True)},
            proximal_mu=float(config.get("proximal_mu", 0.0)),  # legacy FedProx's config key
            round_number=int(config["server-round"]),
        )
        loss = history[-1]["loss"] if history else float("nan")
        arrays = [v.detach().cpu().numpy() for v in model.state_dict().values()]
        metrics = {
            **_named(site),
            "train-loss": float(loss),
            "train-seconds": time.monotonic() - started,
        }
        return arrays, samples, metrics

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]):
        ensure_django()
        from federation.services.rounds import federation_round_received
        from modelassist.models import Split

        site = _serving(self.node_context, str(config[RUN_KEY]))
        cases = _site_cases(site)
        names = parameter_names(site.run.architecture)
        received = federation_round_received(
            site=site,
            number=int(config["server-round"]),
            state=dict(zip(names, parameters, strict=True)),
            arrays=parameters,
            participants=json.loads(str(config.get("participants", "[]"))),
            cases=cases,
        )
        dice = float(received.figures["candidate"]["mean"])
        metrics = {**_named(site), "dice-mean": dice, "promoted": int(bool(received.round.promoted))}
        return 1.0 - dice, len(cases[Split.TEST]), metrics


def client_fn(context: Context):
    return SiteClient(context).to_client()


def _stage(msg: Message) -> str | None:
    configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
    return None if configs is None else str(configs.get(Key.STAGE, ""))


def outgoing_record_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """Record what leaves with the masked vector, exactly as it leaves."""
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, context)
    stage = _stage(msg)  # read now: secaggplus_mod pops it from the message
    if stage == Stage.SETUP:
        _serving(context)  # nothing leaves a site that takes no part, not even its public keys
    fit_config = msg.content.config_records.get("fitins.config")
    reply = call_next(msg, context)
    if stage != Stage.COLLECT_MASKED_VECTORS or reply.has_error() or fit_config is None:
        return reply
    ensure_django()
    from federation.models import FederationSite
    from federation.services.rounds import federation_round_sent

    masked = reply.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]
    size, digest = chunks_digest(masked)
    metrics = reply.content.config_records["fitres.metrics"]
    update = dict(context.state.config_records.get(UPDATE_KEY, ConfigRecord()))
    federation_round_sent(
        site=FederationSite.objects.select_related("run", "export").get(
            pk=int(context.node_config[SITE_KEY])
        ),
        number=int(fit_config["server-round"]),  # type: ignore[arg-type]
        sample_count=int(reply.content.metric_records["fitres.num_examples"]["num_examples"]),
        sent_bytes=size,
        sent_sha256=digest,
        sent_to=str(context.node_config.get("curatect-superlink", "")),
        train_loss=float(metrics["train-loss"]),
        train_seconds=float(metrics["train-seconds"]),
        clipping_norm=float(fit_config[CLIPPING_NORM_KEY]) if CLIPPING_NORM_KEY in fit_config else None,  # type: ignore[arg-type]
        masked={
            "protocol": "SecAgg+",
            "update_bytes": update.get("bytes"),
            "update_sha256": update.get("sha256"),
        },
    )
    return reply


def update_note_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """Note the digest of the update as trained (after any clipping), before it is masked."""
    reply = call_next(msg, context)
    if msg.metadata.message_type != MessageType.TRAIN or reply.has_error():
        return reply
    fitres = compat.recorddict_to_fitres(reply.content, keep_input=True)
    arrays = parameters_to_ndarrays(fitres.parameters)
    size, digest = arrays_digest(arrays)
    context.state.config_records[UPDATE_KEY] = ConfigRecord({"bytes": size, "sha256": digest})
    if _KEEP:
        number = int(msg.content.config_records["fitins.config"]["server-round"])  # type: ignore[arg-type]
        folder = Path(_KEEP)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / f"round-{number}.npz", *arrays, num_examples=np.array(fitres.num_examples))
    return reply


def widen_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """Hand secaggplus_mod the update in float64.

    secaggplus_mod scales each parameter by count / max_weight (about 1e-3 for a site of a few
    dozen scans) and shifts it by the clipping range (8) before quantising, in the array's own
    dtype: in float32 that sum keeps about 1e-6 of 8, which is 1e-3 of a parameter once the
    coordinator divides by the summed weights; the mean was off by up to 2.3e-3. In float64 only
    the quantisation step (2 x 8 / Q) is left. What travels is the quantised vector either way."""
    reply = call_next(msg, context)
    if msg.metadata.message_type != MessageType.TRAIN or reply.has_error():
        return reply
    fitres = compat.recorddict_to_fitres(reply.content, keep_input=True)
    arrays = parameters_to_ndarrays(fitres.parameters)
    fitres.parameters = ndarrays_to_parameters([np.asarray(a, dtype=np.float64) for a in arrays])
    reply.content = compat.fitres_to_recorddict(fitres, keep_input=True)
    return reply


def dp_clipping_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """Flower's fixedclipping_mod, for the runs whose DP wrapper asked for clipping."""
    config = msg.content.config_records.get("fitins.config")
    if msg.metadata.message_type == MessageType.TRAIN and config is not None and CLIPPING_NORM_KEY in config:
        return fixedclipping_mod(msg, context, call_next)
    return call_next(msg, context)


app = ClientApp(
    client_fn=client_fn,
    mods=[outgoing_record_mod, secaggplus_mod, widen_mod, update_note_mod, dp_clipping_mod],
)

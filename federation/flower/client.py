"""A site's ClientApp. It receives only what the ServerApp sends (the global parameters and a
config of numbers and strings), trains the segmenter, and the scan classifier when the run has
one (federation.classifier), on the site's own export (the SuperNode's node config names the
site), tests each round's global model on the site's own test split, and sends back only
parameters, the sample count and figures.

Mods, outermost first: `outgoing_record_mod` writes the governance record of the reply as it
leaves (after clipping); `dp_clipping_mod` applies Flower's `fixedclipping_mod` when the run's
DP wrapper asked for it (a clipping norm in the config), so DP is switchable per run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import fixedclipping_mod

from federation.flower.django_setup import ensure_django

SITE_KEY = "curatect-site-id"
RUN_KEY = "curatect-run"
# Who replies, for the coordinator's records: the site's key and its institution's name (the
# coordinator of another installation has no row of this site; a pk would mean nothing there).
NAME_RECORD = "curatect-site"
CLIPPING_NORM_KEY = "clipping_norm"  # what Flower's DP wrapper puts in the train config

# Test-only: with CURATECT_FEDERATION_OPEN_LOG set, every file this process opens under
# CURATECT_FEDERATION_WATCH is written to that log (a Python audit hook), and so is the kind of
# every record received, so a test can show no site read another's files.
_OPEN_LOG = os.environ.get("CURATECT_FEDERATION_OPEN_LOG", "")
_WATCH = os.environ.get("CURATECT_FEDERATION_WATCH", "")
_log_file: Any = None
_seen: set[str] = set()


def _note(line: str) -> None:
    if _log_file is not None and line not in _seen:
        _seen.add(line)
        _log_file.write(line + "\n")
        _log_file.flush()


def _audit_hook(event: str, args: tuple) -> None:
    if event == "open" and args and isinstance(args[0], str | bytes | os.PathLike):
        path = os.path.abspath(os.fsdecode(args[0]))
        if path.startswith(_WATCH):
            _note(f"open {path}")


if _OPEN_LOG and _WATCH:
    _log_file = open(_OPEN_LOG, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
    sys.addaudithook(_audit_hook)


def _torch_loaded() -> None:
    """flwr's ArrayRecord converts to and from torch state dicts only once torch is imported."""
    import torch  # noqa: F401


_cases: dict[int, Any] = {}  # the site's export, read once per ClientApp process


def _site(msg: Message, context: Context) -> Any:
    ensure_django()
    from federation.services.rounds import site_serving

    for name, record in msg.content.items():
        _note(f"received {name} {type(record).__name__}")
    config = msg.content["config"]
    return site_serving(int(context.node_config[SITE_KEY]), str(config[RUN_KEY]))


def _named(site: Any) -> ConfigRecord:
    return ConfigRecord({"site-key": str(site.key), "institution": site.institution.name, "site-id": site.pk})


def _site_cases(site: Any) -> Any:
    from federation import training

    if site.export_id not in _cases:
        _cases[site.export_id] = training.load_cases(site.export)
    return _cases[site.export_id]


_classifier_data: dict[int, Any] = {}  # the classifier's inputs of the site's export, made once


def _site_classifier_data(site: Any, spec: Any) -> Any:
    from federation import classifier as scan_classifier

    if site.export_id not in _classifier_data:
        _classifier_data[site.export_id] = scan_classifier.load_data(site.export, _site_cases(site), spec)
    return _classifier_data[site.export_id]


def outgoing_record_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """Record what leaves with a train reply, exactly as it leaves (after any clipping)."""
    reply = call_next(msg, context)
    if msg.metadata.message_type != MessageType.TRAIN or reply.has_error():
        return reply
    ensure_django()
    from federation import training
    from federation.models import FederationSite
    from federation.services.rounds import federation_round_sent

    metrics = reply.content["metrics"]
    size, digest = training.arrays_digest(reply.content["arrays"].to_numpy_ndarrays())
    config = msg.content["config"]
    federation_round_sent(
        site=FederationSite.objects.select_related("run", "export").get(
            pk=int(context.node_config[SITE_KEY])
        ),
        number=int(config["server-round"]),
        sample_count=int(metrics["num-examples"]),
        sent_bytes=size,
        sent_sha256=digest,
        sent_to=str(context.node_config.get("curatect-superlink", "")),
        train_loss=float(metrics["train-loss"]),
        train_seconds=float(metrics["train-seconds"]),
        clipping_norm=float(config[CLIPPING_NORM_KEY]) if CLIPPING_NORM_KEY in config else None,
    )
    return reply


def dp_clipping_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """Flower's fixedclipping_mod, for the runs whose ServerApp asked for clipping."""
    if msg.metadata.message_type == MessageType.TRAIN and CLIPPING_NORM_KEY in msg.content["config"]:
        return fixedclipping_mod(msg, context, call_next)
    return call_next(msg, context)


app = ClientApp(mods=[outgoing_record_mod, dp_clipping_mod])


@app.train()
def train(msg: Message, context: Context) -> Message:
    ensure_django()
    _torch_loaded()
    from federation import classifier as scan_classifier
    from federation import training
    from modelassist.models import Split

    site = _site(msg, context)
    config: ConfigRecord = msg.content["config"]
    cases = _site_cases(site)
    run = site.run
    started = time.monotonic()
    segmenter_state, classifier_state = scan_classifier.split_state(
        msg.content["arrays"].to_torch_state_dict()
    )
    model, history = training.train_local(
        cases,
        architecture=run.architecture,
        epochs=int(config.get("local-epochs", run.local_epochs)),
        params=run.train_params,
        initial_state=segmenter_state,
        proximal_mu=float(config.get("proximal-mu", 0.0)),
        round_number=int(config["server-round"]),
    )
    update = model.state_dict()
    spec = scan_classifier.classifier_spec(run)
    if spec is not None and classifier_state:
        classifier, _ = scan_classifier.train_local(
            _site_classifier_data(site, spec),
            spec,
            params=run.train_params,
            initial_state=classifier_state,
            round_number=int(config["server-round"]),
        )
        update = scan_classifier.joined_state(update, classifier.state_dict())
    loss = history[-1]["loss"] if history else float("nan")
    metrics = MetricRecord(
        {
            "num-examples": len(cases[Split.TRAIN]),
            SITE_KEY: site.pk,
            "train-loss": float(loss),
            "train-seconds": time.monotonic() - started,
        }
    )
    return Message(
        content=RecordDict({"arrays": ArrayRecord(update), "metrics": metrics, NAME_RECORD: _named(site)}),
        reply_to=msg,
    )


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    ensure_django()
    _torch_loaded()
    from federation import classifier as scan_classifier
    from federation.services.rounds import federation_round_received
    from modelassist.models import Split

    site = _site(msg, context)
    config: ConfigRecord = msg.content["config"]
    arrays: ArrayRecord = msg.content["arrays"]
    cases = _site_cases(site)
    spec = scan_classifier.classifier_spec(site.run)
    received = federation_round_received(
        site=site,
        number=int(config["server-round"]),
        state=arrays.to_torch_state_dict(),
        arrays=arrays.to_numpy_ndarrays(),
        participants=json.loads(str(config.get("participants", "[]"))),
        cases=cases,
        classifier_data=_site_classifier_data(site, spec) if spec is not None else None,
    )
    candidate = received.figures["candidate"]
    metrics = MetricRecord(
        {
            "num-examples": len(cases[Split.TEST]),
            SITE_KEY: site.pk,
            "dice-mean": float(candidate["mean"]),
            "promoted": int(bool(received.round.promoted)),
        }
    )
    return Message(content=RecordDict({"metrics": metrics, NAME_RECORD: _named(site)}), reply_to=msg)

"""The coordinator's side of a federation run: declare it, start it, run its SuperLink and the
ServerApp (the job), record each aggregated round, finish it."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.api_errors import DomainError
from core.jobs.services import job_claim, job_fail, job_finish, job_requeue
from core.models import Campaign, Institution, User
from core.services.audit import audit_record
from federation import processes
from federation.models import FederationRun, RunStatus, SiteStatus, Strategy
from federation.selectors import managed_institutions
from federation.training import DEFAULT_TRAIN_PARAMS, PARAM_LIMITS
from modelassist.lazy import network
from platform_core.celery import task_named

log = logging.getLogger(__name__)

LIMITS: dict[str, tuple[float, float]] = {
    "rounds": (1, 200),
    "local_epochs": (1, 100),
    "min_sites": (1, 100),
    "proximal_mu": (0.0, 100.0),
    "server_momentum": (0.0, 0.99),
    "dp_noise_multiplier": (0.0, 100.0),
    "dp_clipping_norm": (0.0, 1e6),
    "round_timeout_s": (10, 7 * 24 * 3600),
}
# FedAvgM's momentum when a run names none (the usual choice, Hsu et al. 2019). On the federated
# bench's three non-IID phantom sites it did not beat FedAvg beyond the spread between splits
# (README: How hospitals federate); it is there for federations whose rounds stall.
DEFAULT_SERVER_MOMENTUM = 0.9
POLL_S = 1.0
# How often the coordinator asks Flower itself (`flwr ls`, a CLI process of a few CPU seconds)
# whether the run ended without the ServerApp saying so: a crash is caught within this.
FLOWER_CHECK_S = 30.0
SECAGG_MIN_SITES = 3  # as federation.flower.secagg_server.MIN_SITES (which loads Flower's server)


def _number(name: str, value: Any) -> float:
    lo, hi = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise DomainError(f"{name} must be a number from {lo:g} to {hi:g}", code="bad_params")
    return value


def _train_params(params: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(DEFAULT_TRAIN_PARAMS)
    for key, value in (params or {}).items():
        if key not in PARAM_LIMITS:
            raise DomainError(
                f"unknown training parameter {key!r}; known: {sorted(PARAM_LIMITS)}", code="bad_params"
            )
        lo, hi = PARAM_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise DomainError(f"{key} must be a number from {lo:g} to {hi:g}", code="bad_params")
        out[key] = type(DEFAULT_TRAIN_PARAMS[key])(value)
    return out


def _check_tls(address: str, cert: str, key: str, ca: str) -> None:
    """TLS when configured; without certificates only a loopback SuperLink (one machine) is allowed."""
    if not (cert or key or ca):
        if not processes.is_loopback(address):
            raise DomainError(
                f"{address} is not a loopback address: give the SuperLink's TLS certificate, key and the "
                "CA certificate the sites verify it with (a run without TLS stays on one machine)",
                code="tls_required",
            )
        return
    if not (cert and key and ca):
        raise DomainError(
            "TLS needs all three: the SuperLink's certificate, its key and the CA certificate",
            code="tls_incomplete",
        )
    for label, path in (("certificate", cert), ("key", key), ("CA certificate", ca)):
        if not Path(path).is_file():
            raise DomainError(
                f"the TLS {label} {path} is not a readable file on this server", code="tls_missing"
            )


def federation_run_declare(
    *,
    actor: User,
    institution: Institution,
    campaign: Campaign,
    name: str,
    superlink_address: str,
    architecture: str | None = None,
    rounds: int = 3,
    local_epochs: int = 1,
    strategy: str = Strategy.FEDAVG,
    proximal_mu: float = 0.0,
    server_momentum: float = DEFAULT_SERVER_MOMENTUM,
    dp_enabled: bool = False,
    dp_noise_multiplier: float = 0.0,
    dp_clipping_norm: float = 0.0,
    secagg_enabled: bool = False,
    min_sites: int = 2,
    train_params: dict[str, Any] | None = None,
    round_timeout_s: int = 1800,
    tls_server_cert: str = "",
    tls_server_key: str = "",
    tls_ca_cert: str = "",
) -> FederationRun:
    """A coordinating data manager declares a run over the label schema of one of their campaigns."""
    if (
        not managed_institutions(actor).filter(pk=institution.pk).exists()
        or campaign.institution_id != institution.pk
    ):
        raise DomainError(
            "only a data manager of this institution can declare a federation run here", code="wrong_role"
        )
    name = (name or "").strip()
    if not name:
        raise DomainError("give the federation run a name", code="name_required")
    architecture = architecture or network.DEFAULT_ARCHITECTURE
    if architecture not in network.ARCHITECTURES:
        raise DomainError(
            f"unknown architecture {architecture!r}; known: {sorted(network.ARCHITECTURES)}",
            code="bad_architecture",
        )
    if strategy not in Strategy.values:
        raise DomainError(f"strategy must be one of {Strategy.values}", code="bad_strategy")
    for field, value in [
        ("rounds", rounds),
        ("local_epochs", local_epochs),
        ("min_sites", min_sites),
        ("proximal_mu", proximal_mu),
        ("server_momentum", server_momentum),
        ("round_timeout_s", round_timeout_s),
    ]:
        _number(field, value)
    if strategy == Strategy.FEDPROX and proximal_mu <= 0:
        raise DomainError("FedProx needs a proximal_mu above 0 (e.g. 0.01)", code="bad_params")
    if strategy == Strategy.FEDAVGM and server_momentum <= 0:
        raise DomainError(
            f"FedAvgM needs a server_momentum above 0 (e.g. {DEFAULT_SERVER_MOMENTUM})", code="bad_params"
        )
    if dp_enabled:
        _number("dp_noise_multiplier", dp_noise_multiplier)
        if _number("dp_clipping_norm", dp_clipping_norm) <= 0:
            raise DomainError("differential privacy needs a clipping norm above 0", code="bad_params")
    if secagg_enabled and min_sites < SECAGG_MIN_SITES:
        raise DomainError(
            f"secure aggregation (Flower's SecAgg+) needs min_sites of at least {SECAGG_MIN_SITES}: with fewer "
            "sites in a round, a site could subtract its own update from the sum and read the other's",
            code="secagg_too_few_sites",
        )
    processes.split_address(superlink_address)
    _check_tls(superlink_address, tls_server_cert, tls_server_key, tls_ca_cert)
    with transaction.atomic():
        run = FederationRun.objects.create(
            institution=institution,
            name=name,
            label_schema=campaign.label_schema,
            architecture=architecture,
            rounds=rounds,
            local_epochs=local_epochs,
            train_params=_train_params(train_params),
            strategy=strategy,
            proximal_mu=proximal_mu if strategy == Strategy.FEDPROX else 0.0,
            server_momentum=server_momentum if strategy == Strategy.FEDAVGM else 0.0,
            dp_enabled=dp_enabled,
            dp_noise_multiplier=dp_noise_multiplier if dp_enabled else 0.0,
            dp_clipping_norm=dp_clipping_norm if dp_enabled else 0.0,
            secagg_enabled=secagg_enabled,
            min_sites=min_sites,
            superlink_address=superlink_address.strip(),
            tls_server_cert=tls_server_cert,
            tls_server_key=tls_server_key,
            tls_ca_cert=tls_ca_cert,
            round_timeout_s=round_timeout_s,
            created_by=actor,
        )
        audit_record(
            actor=actor,
            action="federation_run_declare",
            obj=run,
            to_state=RunStatus.OPEN,
            name=name,
            key=str(run.key),
            strategy=strategy,
            rounds=rounds,
            superlink=run.superlink_address,
            dp=dp_enabled,
            noise_multiplier=run.dp_noise_multiplier,
            secagg=secagg_enabled,
        )
    return run


def _require_coordinator(actor: User, run: FederationRun, action: str) -> None:
    if run.is_remote:
        raise DomainError(
            f"this run is coordinated by {run.coordinator_name}: its SuperLink runs there, so only its "
            f"coordinator can {action}; this site starts its SuperNode or leaves the run",
            code="coordinated_elsewhere",
        )
    if not managed_institutions(actor).filter(pk=run.institution_id).exists():
        raise DomainError(
            f"only a data manager of the coordinating institution can {action}", code="wrong_role"
        )


def federation_run_start(*, actor: User, run: FederationRun) -> FederationRun:
    """Queue the coordinator's job (SuperLink + ServerApp); the sites' SuperNodes connect to it."""
    _require_coordinator(actor, run, "start this run")
    with transaction.atomic():
        run = FederationRun.objects.select_for_update().get(pk=run.pk)
        taking_part = run.sites.exclude(status__in=[SiteStatus.LEFT, SiteStatus.FAILED]).count()
        # Sites of other installations join at their own sites, out of sight: once an invitation
        # went out, the ServerApp waits for min_sites SuperNodes instead.
        if run.status == RunStatus.OPEN and taking_part < run.min_sites and not run.invitation_issued_at:
            raise DomainError(
                f"{taking_part} site{'s' if taking_part != 1 else ''} joined; this run needs at least "
                f"{run.min_sites} (or invite the sites of other installations: download the run's invitation)",
                code="too_few_sites",
            )
        if not job_requeue(
            run,
            from_states=[RunStatus.OPEN],
            actor=actor,
            action="federation_run_start",
            audit={"sites": taking_part},
        ):
            raise DomainError(f"this run is {run.status}; only an open run can start", code="not_open")
        transaction.on_commit(lambda: task_named("federation.tasks.federation_run_coordinate").delay(run.pk))
    return run


def federation_run_cancel(*, actor: User, run: FederationRun, reason: str = "") -> FederationRun:
    _require_coordinator(actor, run, "cancel this run")
    text = f"cancelled by {actor.username}" + (f": {reason.strip()}" if reason.strip() else "")
    if not job_fail(
        run,
        text,
        actor=actor,
        action="federation_run_cancel",
        from_states=[RunStatus.OPEN, RunStatus.QUEUED, RunStatus.RUNNING],
    ):
        raise DomainError(f"this run is already {run.status}", code="already_ended")
    run.refresh_from_db()
    return run


def federation_run_round_record(
    run_id: int, number: int, participants: list[dict[str, Any]], **figures: Any
) -> None:
    """The ServerApp aggregated a round: who took part with how many samples, what arrived."""
    with transaction.atomic():
        run = FederationRun.objects.select_for_update().get(pk=run_id)
        entry = {"round": number, "participants": participants, "at": timezone.now().isoformat(), **figures}
        history = [h for h in run.history if h.get("round") != number] + [entry]
        FederationRun.objects.filter(pk=run.pk).update(
            history=history,
            progress=round(number / max(run.rounds, 1), 4),
            message=f"round {number} of {run.rounds} aggregated",
        )
        audit_record(
            actor=None,
            actor_label="federation ServerApp",
            action="federation_round_aggregate",
            obj=run,
            round=number,
            participants=participants,
            **figures,
        )


def federation_run_finish(run_id: int, summary: dict[str, Any]) -> bool:
    """The ServerApp ran every round."""
    run = FederationRun.objects.get(pk=run_id)
    return job_finish(
        run,
        actor_label="federation ServerApp",
        action="federation_run_done",
        audit={"rounds": run.rounds, **summary},
        message="done",
    )


def federation_run_abort(run_id: int, reason: str | BaseException) -> bool:
    """The ServerApp could not finish the rounds: the run fails with its reason."""
    run = FederationRun.objects.get(pk=run_id)
    return job_fail(
        run,
        reason,
        actor_label="federation ServerApp",
        action="federation_run_failed",
        from_states=[RunStatus.RUNNING],
    )


# ----------------------------------------------------------------------------- the job


def run_home(run: FederationRun) -> Path:
    """The coordinator's FLWR_HOME of this run (SuperLink state, logs, the submitted FAB)."""
    return Path(settings.DATA_DIR) / "federation" / f"run-{run.pk}" / "flwr"


def federation_run_execute(
    run_id: int, *, worker: str = "", extra_env: dict[str, str] | None = None
) -> FederationRun:
    """The coordinator's job: the SuperLink up, the Flower App submitted, then wait until the
    ServerApp finished the run (or Flower says it failed, or the run was cancelled); the
    SuperLink and every process it started are stopped however it ends."""
    run = FederationRun.objects.get(pk=run_id)
    if not job_claim(run, worker=worker, message="starting the SuperLink"):
        run.refresh_from_db()
        return run
    home = run_home(run)
    processes.write_connection(home, _control_address(run), ca=run.tls_ca_cert)
    superlink = None
    try:
        superlink = processes.superlink_start(
            run.superlink_address,
            home,
            cert=run.tls_server_cert,
            key=run.tls_server_key,
            ca=run.tls_ca_cert,
            extra_env=extra_env,
        )
        flower_run_id = processes.app_submit(
            home,
            {"curatect-run-id": run.pk},
            app_dir=processes.SECAGG_APP_DIR if run.secagg_enabled else processes.APP_DIR,
        )
        FederationRun.objects.filter(pk=run.pk).update(flower_run_id=flower_run_id, message="rounds running")
        _wait(run, home, flower_run_id, superlink)
    except Exception as exc:  # recorded on the row: the coordinator sees why
        log.exception("federation run %s failed", run.pk)
        job_fail(run, exc, action="federation_run_failed", from_states=[RunStatus.RUNNING])
    finally:
        processes.stop(superlink)
    run.refresh_from_db()
    return run


def _control_address(run: FederationRun) -> str:
    """`flwr run` talks to the SuperLink on this machine (its one HTTP port)."""
    host, port = processes.split_address(run.superlink_address)
    return f"127.0.0.1:{port}" if host in ("0.0.0.0", "::") else run.superlink_address


def _wait(run: FederationRun, home: Path, flower_run_id: str, superlink) -> None:
    deadline = time.monotonic() + run.rounds * (run.round_timeout_s + 60) + 120
    checked = 0.0
    while True:
        status = FederationRun.objects.values_list("status", flat=True).get(pk=run.pk)
        if status != RunStatus.RUNNING:
            return  # finished by the ServerApp, or cancelled
        if superlink.poll() is not None:
            raise DomainError(
                f"the SuperLink stopped (exit {superlink.returncode}); see {home / 'superlink.log'}",
                code="superlink_stopped",
            )
        if time.monotonic() - checked > FLOWER_CHECK_S:
            checked = time.monotonic()
            flower = processes.app_status(home, flower_run_id)
            if str(flower.get("status", "")).startswith("finished") and not _finished_now(run):
                raise DomainError(
                    f"Flower ended the run ({flower['status']}): {flower.get('status-details', '')}",
                    code="flower_failed",
                )
        if time.monotonic() > deadline:
            raise DomainError("the rounds took longer than their timeouts allow", code="timeout")
        time.sleep(POLL_S)


def _finished_now(run: FederationRun) -> bool:
    """The ServerApp's last write may land just after Flower reports the run finished."""
    for _ in range(10):
        if FederationRun.objects.values_list("status", flat=True).get(pk=run.pk) != RunStatus.RUNNING:
            return True
        time.sleep(0.5)
    return False

"""Invitations: how a run declared at one hospital reaches the separate CurateCT of another.

The coordinator's data manager downloads a run's invitation (a small JSON document: what is
trained and how, where the SuperLink's Fleet API is, the CA certificate the sites verify it
with, never a key); a site's data manager imports it, which makes a participant copy of the run
in the site's own database (same key, `is_remote`), and then joins that copy with one of the
site's exports exactly as a site of the coordinator's own installation joins the run itself.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.api_errors import Conflict, DomainError
from core.models import Institution, User
from core.services.audit import audit_record
from federation import processes
from federation.models import FederationRun, RunStatus, Strategy
from federation.selectors import managed_institutions
from federation.services.runs import _number, _train_params
from modelassist.lazy import network

KIND = "curatect-federation-invitation"
VERSION = 1
MAX_BYTES = 64 * 1024  # a schema, some numbers and one CA certificate: a few KiB
PEM_CERT = "-----BEGIN CERTIFICATE-----"


def _bad(reason: str, code: str = "bad_invitation") -> DomainError:
    return DomainError(reason, code=code)


def _ca_pem(run: FederationRun) -> str | None:
    """The CA certificate's text, refused if the file holds anything secret."""
    if not run.tls_ca_cert:
        return None
    try:
        text = Path(run.tls_ca_cert).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise DomainError(
            f"the run's CA certificate {run.tls_ca_cert} cannot be read on this server ({exc})",
            code="tls_missing",
        ) from exc
    _check_pem(text, where=run.tls_ca_cert)
    return text


def _check_pem(text: str, *, where: str) -> None:
    if "PRIVATE KEY" in text:
        # An invitation travels by e-mail and chat: a key in it would be a key given away.
        raise _bad(
            f"{where} holds a private key; an invitation carries only the CA certificate "
            "(give a file with the certificate alone)",
            code="ca_has_key",
        )
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise _bad(f"{where} is not a PEM certificate ({exc})", code="bad_ca_certificate") from exc


def federation_invitation_issue(*, actor: User, run: FederationRun) -> dict[str, Any]:
    """The run's invitation for the sites of other installations; issuing it is audited, and a
    run with an invitation out may start without local sites (they join at their own sites)."""
    if run.is_remote:
        raise DomainError(
            f"this run is coordinated by {run.coordinator_name}; only its coordinator issues invitations",
            code="coordinated_elsewhere",
        )
    if not managed_institutions(actor).filter(pk=run.institution_id).exists():
        raise DomainError(
            "only a data manager of the coordinating institution can invite sites", code="wrong_role"
        )
    if run.status not in (RunStatus.OPEN, RunStatus.QUEUED, RunStatus.RUNNING):
        raise DomainError(f"this run is {run.status}; sites can no longer join it", code="run_ended")
    host, _ = processes.split_address(run.superlink_address)
    if host in ("0.0.0.0", "::"):
        raise DomainError(
            f"the run's SuperLink address {run.superlink_address} is where it listens, not an address "
            "a site can dial; declare the run with the name or IP address the sites reach",
            code="bad_address",
        )
    document = {
        "kind": KIND,
        "version": VERSION,
        "key": str(run.key),
        "name": run.name,
        "coordinator_institution": run.institution.name,
        "label_schema": run.label_schema,
        "architecture": run.architecture,
        "rounds": run.rounds,
        "local_epochs": run.local_epochs,
        "train_params": run.train_params,
        "strategy": run.strategy,
        "proximal_mu": run.proximal_mu,
        "server_momentum": run.server_momentum,
        "dp_enabled": run.dp_enabled,
        "dp_noise_multiplier": run.dp_noise_multiplier,
        "dp_clipping_norm": run.dp_clipping_norm,
        "secagg_enabled": run.secagg_enabled,
        "min_sites": run.min_sites,
        "round_timeout_s": run.round_timeout_s,
        "superlink_address": run.superlink_address,
        "ca_certificate_pem": _ca_pem(run),
        "issued_at": timezone.now().isoformat(),
    }
    with transaction.atomic():
        FederationRun.objects.filter(pk=run.pk, invitation_issued_at__isnull=True).update(
            invitation_issued_at=timezone.now()
        )
        audit_record(
            actor=actor,
            action="federation_invitation_issue",
            obj=run,
            key=str(run.key),
            superlink=run.superlink_address,
            tls=bool(document["ca_certificate_pem"]),
        )
    return document


# ----------------------------------------------------------------------------- import at a site


def _parse(raw: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, str):
        if len(raw.encode("utf-8")) > MAX_BYTES:
            raise _bad(f"this invitation is over {MAX_BYTES // 1024} KiB; a CurateCT invitation is a few KiB")
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise _bad(
                f"this is not a JSON document ({exc.args[0] if exc.args else exc}); paste the whole "
                "invitation file the coordinator sent"
            ) from exc
    if not isinstance(raw, dict):
        raise _bad("an invitation is a JSON object; paste the whole invitation file the coordinator sent")
    text = json.dumps(raw)
    if "\\u0000" in text:  # PostgreSQL keeps no NUL in text or jsonb; no invitation has one
        raise _bad("this invitation holds a NUL character; paste the file exactly as the coordinator sent it")
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise _bad(f"this invitation is over {MAX_BYTES // 1024} KiB; a CurateCT invitation is a few KiB")
    if raw.get("kind") != KIND:
        raise _bad(f"this is not a CurateCT federation invitation (its kind is {_shown(raw.get('kind'))})")
    if raw.get("version") != VERSION or isinstance(raw.get("version"), bool):
        raise _bad(
            f"this invitation is version {_shown(raw.get('version'))}; this CurateCT reads version {VERSION}: "
            "ask the coordinator for one from a matching CurateCT release",
            code="invitation_version",
        )
    return raw


def _shown(value: Any) -> str:
    return repr(value)[:60]


def _text(doc: dict[str, Any], field: str, limit: int) -> str:
    value = doc.get(field)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise _bad(f"the invitation's {field} must be text of 1 to {limit} characters")
    return value.strip()


def _flag(doc: dict[str, Any], field: str) -> bool:
    value = doc.get(field, False)
    if not isinstance(value, bool):
        raise _bad(f"the invitation's {field} must be true or false")
    return value


def _field(doc: dict[str, Any], field: str, default: float) -> Any:
    value = doc.get(field, default)
    if isinstance(default, int) and not isinstance(value, int):
        raise _bad(f"the invitation's {field} must be a whole number")
    try:
        return _number(field, value)
    except DomainError as exc:
        raise _bad(f"the invitation's {exc.detail}") from exc


def _fields(doc: dict[str, Any]) -> dict[str, Any]:
    """The run as declared by the coordinator, checked as a declaration here is checked."""
    try:
        key = uuid.UUID(str(doc.get("key", "")))
    except ValueError as exc:
        raise _bad("the invitation's key is not a run key (a UUID)") from exc
    schema = doc.get("label_schema")
    if not isinstance(schema, dict) or not isinstance(schema.get("classes"), list):
        raise _bad("the invitation's label_schema must be an object with a list of classes")
    architecture = _text(doc, "architecture", 50)
    if architecture not in network.ARCHITECTURES:
        raise _bad(
            f"this CurateCT cannot train architecture {architecture!r} (it has {sorted(network.ARCHITECTURES)}); "
            "update it to the coordinator's release",
            code="bad_architecture",
        )
    strategy = doc.get("strategy", Strategy.FEDAVG)
    if strategy not in Strategy.values:
        raise _bad(f"the invitation's strategy must be one of {Strategy.values}")
    train_params = doc.get("train_params", {})
    if not isinstance(train_params, dict):
        raise _bad("the invitation's train_params must be an object")
    try:
        train_params = _train_params(train_params)
    except DomainError as exc:
        raise _bad(f"the invitation's train_params: {exc.detail}") from exc
    address = _text(doc, "superlink_address", 200)
    processes.split_address(address)
    fields = {
        "key": key,
        "name": _text(doc, "name", 100),
        "coordinator_name": _text(doc, "coordinator_institution", 200),
        "label_schema": schema,
        "architecture": architecture,
        "rounds": _field(doc, "rounds", 3),
        "local_epochs": _field(doc, "local_epochs", 1),
        "train_params": train_params,
        "strategy": strategy,
        "proximal_mu": _field(doc, "proximal_mu", 0.0),
        "server_momentum": _field(doc, "server_momentum", 0.0),
        "dp_enabled": _flag(doc, "dp_enabled"),
        "dp_noise_multiplier": _field(doc, "dp_noise_multiplier", 0.0),
        "dp_clipping_norm": _field(doc, "dp_clipping_norm", 0.0),
        "secagg_enabled": _flag(doc, "secagg_enabled"),
        "min_sites": _field(doc, "min_sites", 2),
        "round_timeout_s": _field(doc, "round_timeout_s", 1800),
        "superlink_address": address,
    }
    if strategy == Strategy.FEDPROX and fields["proximal_mu"] <= 0:
        raise _bad("the invitation's run uses FedProx without a proximal_mu above 0")
    if fields["dp_enabled"] and fields["dp_clipping_norm"] <= 0:
        raise _bad("the invitation's run uses differential privacy without a clipping norm above 0")
    return fields


def _ca_of(doc: dict[str, Any], address: str) -> str | None:
    pem = doc.get("ca_certificate_pem")
    if pem in (None, ""):
        if not processes.is_loopback(address):
            raise _bad(
                f"the invitation has no CA certificate and its SuperLink {address} is not on this machine; "
                "a site dials another hospital only over TLS: ask the coordinator for an invitation of a run "
                "declared with certificates",
                code="tls_required",
            )
        return None
    if not isinstance(pem, str):
        raise _bad("the invitation's ca_certificate_pem must be the PEM text of a certificate")
    _check_pem(pem, where="the invitation's ca_certificate_pem")
    return pem


def invitation_folder(key: uuid.UUID | str) -> Path:
    """The site's private folder of one imported run (its CA certificate)."""
    return Path(settings.DATA_DIR) / "federation" / "invitations" / str(key)


def _write_private(path: Path, text: str) -> None:
    """Owner-only, from the first byte (no window where another account could read it)."""
    for folder in (path.parent.parent.parent, path.parent.parent, path.parent):
        folder.mkdir(mode=0o700, exist_ok=True)
    path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text)
    path.chmod(0o600)


def federation_invitation_import(
    *, actor: User, institution: Institution, invitation: str | dict[str, Any]
) -> FederationRun:
    """A site's data manager imports another installation's invitation: a participant copy of
    the run, in this installation, owned by their institution, which they then join by key."""
    if not managed_institutions(actor).filter(pk=institution.pk).exists():
        raise DomainError(
            "only a data manager of this institution can import an invitation for it", code="wrong_role"
        )
    doc = _parse(invitation)
    fields = _fields(doc)
    pem = _ca_of(doc, fields["superlink_address"])
    existing = FederationRun.objects.filter(key=fields["key"]).first()
    if existing is not None:
        raise _duplicate(existing, institution)
    ca_path = invitation_folder(fields["key"]) / "ca.pem"
    try:
        with transaction.atomic():
            run = FederationRun.objects.create(
                institution=institution,
                is_remote=True,
                tls_ca_cert=str(ca_path) if pem else "",
                created_by=actor,
                **fields,
            )
            if pem:
                _write_private(ca_path, pem)
            audit_record(
                actor=actor,
                action="federation_invitation_import",
                obj=run,
                to_state=RunStatus.OPEN,
                key=str(run.key),
                name=run.name,
                coordinator=run.coordinator_name,
                superlink=run.superlink_address,
                tls=bool(pem),
                rounds=run.rounds,
                strategy=run.strategy,
                dp=run.dp_enabled,
                secagg=run.secagg_enabled,
            )
    except IntegrityError as exc:  # the same invitation imported by two requests at once
        existing = FederationRun.objects.filter(key=fields["key"]).first()
        if existing is None:
            raise
        raise _duplicate(existing, institution) from exc
    return run


def _duplicate(existing: FederationRun, institution: Institution) -> Conflict:
    if not existing.is_remote:
        return Conflict(
            "this run was declared in this installation; join it by its key (no invitation needed)",
            code="invitation_imported",
        )
    if existing.institution_id == institution.pk:
        return Conflict(
            f"this invitation was imported already (run {existing.pk}, '{existing.name}'); join that run",
            code="invitation_imported",
        )
    return Conflict(
        "another institution of this installation imported this invitation already; a run's key is "
        "imported once per installation",
        code="invitation_imported",
    )

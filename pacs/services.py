"""Writes of the PACS features: remote PACS configuration, pulls (manual and periodic), label
send requests. Every write is audited; background work starts on commit."""

from __future__ import annotations

import logging
import re
from typing import Any

from django.db import transaction

from core.api_errors import DomainError, NotFound
from core.models import Campaign, Institution, Role, Scan, User
from core.selectors import institutions_of
from core.services.audit import audit_record
from imaging.ingest.store import uid_keys
from pacs import remote as pacs
from pacs.models import PacsSend, RemotePacs

logger = logging.getLogger(__name__)

SEND_TASK = "modelassist.pacs_send.send_run"
AE_TITLE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable, no backslash, ≤ 16
REMOTE_FIELDS = (
    "name",
    "dicomweb_url",
    "auth_type",
    "username",
    "secret",
    "ae_title",
    "host",
    "port",
    "send_method",
    "send_on_approval",
    "pull_filter",
    "pull_interval_minutes",
    "pull_campaign",
)


def send_task_on_commit(name: str, *args: Any) -> None:
    from platform_core.celery import app

    transaction.on_commit(lambda: app.send_task(name, args=list(args)))


# --- remote PACS configuration ---------------------------------------------------------------


def _check_remote(remote: RemotePacs) -> None:
    if not remote.name.strip():
        raise DomainError("give the PACS a name", code="invalid")
    if remote.dicomweb_url and not remote.dicomweb_url.startswith(("http://", "https://")):
        raise DomainError("the DICOMweb URL must start with http:// or https://", code="invalid")
    if remote.auth_type != RemotePacs.Auth.NONE and not remote.has_secret:
        raise DomainError("this authentication needs a password or token", code="invalid")
    if remote.auth_type == RemotePacs.Auth.BASIC and not remote.username:
        raise DomainError("HTTP Basic needs a username", code="invalid")
    if remote.ae_title and not AE_TITLE_RE.match(remote.ae_title):
        raise DomainError("an AE title is 1 to 16 printable characters without a backslash", code="invalid")
    needs_dimse = remote.send_method == RemotePacs.SendMethod.CSTORE
    if needs_dimse and not (remote.ae_title and remote.host and remote.port):
        raise DomainError("sending by C-STORE needs the PACS's AE title, host and port", code="invalid")
    needs_web = remote.send_method == RemotePacs.SendMethod.STOW or remote.pull_interval_minutes
    if needs_web and not remote.dicomweb_url:
        raise DomainError("STOW-RS sends and periodic pulls need the DICOMweb URL", code="invalid")
    if remote.send_on_approval and not remote.send_method:
        raise DomainError(
            "choose how labels are sent (STOW-RS or C-STORE) to send them on approval", code="invalid"
        )
    if not isinstance(remote.pull_filter, dict) or not all(
        isinstance(v, str) for v in remote.pull_filter.values()
    ):
        raise DomainError(
            'the pull filter is an object of QIDO-RS keys and text values, e.g. {"StudyDescription": '
            '"*CHEST*"}',
            code="invalid",
        )
    if remote.pull_campaign and remote.pull_campaign.institution_id != remote.institution_id:
        raise DomainError("the pull campaign must belong to the same institution", code="invalid")


def remote_save(
    *, actor: User, institution: Institution, data: dict, remote: RemotePacs | None = None
) -> RemotePacs:
    """Create or change a remote PACS of an institution the actor manages."""
    if not institutions_of(actor, Role.DATA_MANAGER).filter(pk=institution.pk).exists():
        raise NotFound("no such institution")
    created = remote is None
    remote = remote or RemotePacs(institution=institution)
    for key in REMOTE_FIELDS:
        if key == "secret" and key in data:
            remote.set_secret(data[key])  # stored sealed, never in clear
        elif key in data:
            setattr(remote, key, data[key])
    if remote.auth_type == RemotePacs.Auth.NONE:
        remote.username = ""
        remote.set_secret("")
    _check_remote(remote)
    with transaction.atomic():
        if (
            RemotePacs.objects.filter(institution=institution, name=remote.name)
            .exclude(pk=remote.pk)
            .exists()
        ):
            raise DomainError(
                f"{institution.name} already has a PACS named {remote.name!r}", code="duplicate"
            )
        remote.save()
        changed = sorted(k for k in data if k in REMOTE_FIELDS and k != "secret")
        audit_record(
            actor=actor,
            action="pacs_remote_create" if created else "pacs_remote_change",
            obj=remote,
            fields=changed,
            secret_changed="secret" in data,
        )
    return remote


def remote_delete(*, actor: User, remote: RemotePacs) -> None:
    with transaction.atomic():
        audit_record(actor=actor, action="pacs_remote_delete", obj=remote, name=remote.name)
        remote.delete()


def institution_ae_titles_set(*, actor: User, institution: Institution, titles: list[str]) -> Institution:
    """The calling AE titles the institution's PACS may send from (the C-STORE receiver)."""
    cleaned = sorted({str(t).strip() for t in titles})
    bad = [t for t in cleaned if not AE_TITLE_RE.match(t)]
    if bad:
        raise DomainError(
            f"not valid AE titles: {bad} (1–16 printable characters, no backslash)", code="invalid"
        )
    taken = [
        (t, other.name)
        for other in Institution.objects.exclude(pk=institution.pk)
        for t in cleaned
        if t in {str(x).strip() for x in other.allowed_ae_titles or []}
    ]
    if taken:
        raise DomainError(
            "an AE title selects one institution; already used: "
            + ", ".join(f"{t} by {name}" for t, name in taken),
            code="ae_title_taken",
        )
    with transaction.atomic():
        old = list(institution.allowed_ae_titles or [])
        institution.allowed_ae_titles = cleaned
        institution.save(update_fields=["allowed_ae_titles"])
        audit_record(actor=actor, action="ae_titles_set", obj=institution, old=old, new=cleaned)
    return institution


# --- label sends -------------------------------------------------------------------------------


def send_request(
    *,
    actor: User | None,
    scan: Scan,
    remote: RemotePacs | None = None,
    campaign: Campaign | None = None,
    trigger: str = PacsSend.Trigger.MANUAL,
    revision_id: int | None = None,
) -> PacsSend:
    """Queue sending a scan's curated labels as DICOM SEG to its institution's PACS.

    The send itself (SEG from the curated revision) is modelassist's task, started by name:
    the core never imports the layers that own curated labels."""
    institution_id = scan.study.institution_id
    if remote is None:
        candidates = RemotePacs.objects.filter(institution_id=institution_id).exclude(send_method="")
        if candidates.count() != 1:
            raise DomainError(
                "name the PACS to send to (remote_id)"
                if candidates.exists()
                else "configure a PACS with a send method (STOW-RS or C-STORE) for this institution first",
                code="no_remote",
            )
        remote = candidates.get()
    if remote.institution_id != institution_id:
        raise NotFound("no such PACS")
    if not remote.send_method:
        raise DomainError(
            f"{remote.name} has no send method; choose STOW-RS or C-STORE", code="no_send_method"
        )
    if campaign is not None and not campaign.campaign_scans.filter(scan=scan).exists():
        raise DomainError("the scan is not part of this campaign", code="invalid")
    with transaction.atomic():
        send = PacsSend.objects.create(
            remote=remote,
            scan=scan,
            campaign=campaign,
            requested_by=actor,
            trigger=trigger,
            revision_id=revision_id,
            method=remote.send_method,
        )
        audit_record(
            actor=actor,
            action="pacs_send_request",
            obj=send,
            to_state=send.status,
            scan=scan,
            campaign=campaign,
            remote=remote.name,
            trigger=trigger,
        )
        send_task_on_commit(SEND_TASK, send.pk)
    return send


# --- original UIDs of scans that did not arrive from the PACS -----------------------------------


def origin_lookup(remote: RemotePacs, scan: Scan):
    """Find the hospital's own UIDs of a scan on its PACS (QIDO-RS by the original patient ID):
    remapping is deterministic, so the series whose remapped UID equals ours is the original.
    Records and returns the SeriesOrigin, or None when the PACS does not hold the series."""
    from imaging import pseudonymise as pseudo
    from pacs.models import SeriesOrigin

    patient = scan.study.patient
    studies = pacs.search_studies(remote, {"PatientID": patient.original_patient_id}, limit=200)
    for study in studies:
        study_uid = study.get("0020000D", {}).get("Value", [""])[0]
        # The scan's UIDs were remapped under its institution's key (or, if stored before keys
        # were per institution, the platform key): the one under which the study UID matches.
        key = next(
            (
                k
                for k in uid_keys(scan.study.institution)
                if pseudo.remap_uid(study_uid, k) == scan.study.study_uid
            ),
            None,
        )
        if key is None:
            continue
        for series in pacs.search_series(remote, study_uid):
            series_uid = series.get("0020000E", {}).get("Value", [""])[0]
            if pseudo.remap_uid(series_uid, key) != scan.series_uid:
                continue
            instances = pacs.search_instances(remote, study_uid, series_uid)
            sops = {
                pseudo.remap_uid(i["00080018"]["Value"][0], key): i["00080018"]["Value"][0] for i in instances
            }
            stored = list(scan.instances.order_by("index").values_list("sop_uid", flat=True))
            if not all(s in sops for s in stored):
                return None
            meta = pacs.instance_metadata(remote, study_uid, series_uid, sops[stored[0]])
            header = {
                keyword: str((study.get(tag, {}).get("Value") or [""])[0] or "")
                for keyword, tag in (
                    ("StudyDate", "00080020"),
                    ("StudyTime", "00080030"),
                    ("AccessionNumber", "00080050"),
                    ("StudyID", "00200010"),
                    ("PatientBirthDate", "00100030"),
                    ("PatientSex", "00100040"),
                )
            }
            origin, _ = SeriesOrigin.objects.update_or_create(
                scan=scan,
                defaults={
                    "study_uid": study_uid,
                    "series_uid": series_uid,
                    "frame_of_reference_uid": (meta.get("00200052", {}).get("Value") or [""])[0],
                    "sop_uids": [sops[s] for s in stored],
                    "header": {k: v for k, v in header.items() if v},
                    "source": "lookup",
                },
            )
            return origin
    return None

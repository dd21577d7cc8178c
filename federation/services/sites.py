"""A site's side of a federation run: join with a curated export, leave, and the job that runs
the site's SuperNode on its `train` worker until the run ends or the site leaves."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.api_errors import Conflict, DomainError
from core.jobs.services import job_claim, job_fail, job_finish, job_requeue
from core.models import User
from core.services.audit import audit_record
from federation import processes
from federation.models import FederationRun, FederationSite, RunStatus, SiteStatus
from federation.selectors import managed_institutions
from modelassist.models import DatasetExport, JobStatus
from platform_core.celery import task_named

log = logging.getLogger(__name__)

POLL_S = 0.5
OPEN_TO_SITES = (RunStatus.OPEN, RunStatus.QUEUED, RunStatus.RUNNING)


def _lesion_classes(schema: dict[str, Any]) -> list:
    return [(c.get("value"), c.get("name")) for c in schema.get("classes", [])]


def _require_site_manager(actor: User, site: FederationSite, action: str) -> None:
    if not managed_institutions(actor).filter(pk=site.institution_id).exists():
        raise DomainError(f"only a data manager of this site can {action}", code="wrong_role")


def federation_site_join(*, actor: User, run: FederationRun, export: DatasetExport) -> FederationSite:
    """A site's data manager takes part with one finished export of a campaign of their institution."""
    campaign = export.campaign
    if not managed_institutions(actor).filter(pk=campaign.institution_id).exists():
        raise DomainError("join with an export of a campaign your institution runs", code="wrong_role")
    if export.status != JobStatus.DONE:
        raise DomainError(
            f"export {export.pk} is {export.status}; join with a finished export", code="bad_export"
        )
    if run.status not in OPEN_TO_SITES:
        raise DomainError(f"this run is {run.status}; sites can join only before it ends", code="run_ended")
    if _lesion_classes(campaign.label_schema) != _lesion_classes(run.label_schema):
        raise DomainError(
            "this campaign's lesion classes differ from the run's label schema; one model cannot learn both",
            code="schema_mismatch",
        )
    try:
        with transaction.atomic():
            site = FederationSite.objects.create(
                run=run,
                institution_id=campaign.institution_id,
                campaign=campaign,
                export=export,
                joined_by=actor,
            )
            audit_record(
                actor=actor,
                action="federation_site_join",
                obj=site,
                campaign=campaign,
                to_state=SiteStatus.JOINED,
                run=run.pk,
                run_key=str(run.key),
                export=export.version,
                export_sha256=export.content_sha256,
                coordinator=run.superlink_address,
            )
    except IntegrityError as exc:
        raise Conflict("this institution already joined this run", code="already_joined") from exc
    return site


def federation_site_start(*, actor: User | None, site: FederationSite) -> FederationSite:
    """Send the site's SuperNode job to its `train` worker."""
    if actor is not None:
        _require_site_manager(actor, site, "start its SuperNode")
    with transaction.atomic():
        if not job_requeue(
            site,
            from_states=[SiteStatus.JOINED],
            actor=actor,
            action="federation_site_start",
            audit={"campaign": site.campaign_id, "run": site.run_id},
        ):
            raise DomainError(f"this site is {site.status}; only a joined site can start", code="not_joined")
        site_id = site.pk
        transaction.on_commit(lambda: task_named("federation.tasks.federation_site_serve").delay(site_id))
    return site


def federation_site_leave(*, actor: User, site: FederationSite, reason: str = "") -> FederationSite:
    """The site leaves: nothing more leaves it; its SuperNode stops (the job sees the status);
    the run goes on with the others."""
    _require_site_manager(actor, site, "take it out of the run")
    sources = [SiteStatus.JOINED, SiteStatus.QUEUED, SiteStatus.RUNNING]
    with transaction.atomic():
        old = FederationSite.objects.select_for_update().values_list("status", flat=True).get(pk=site.pk)
        if old not in sources:
            raise DomainError(f"this site is already {old}", code="already_ended")
        now = timezone.now()
        FederationSite.objects.filter(pk=site.pk, status=old).update(
            status=SiteStatus.LEFT,
            left_by=actor,
            left_at=now,
            left_reason=reason.strip()[:300],
            finished_at=now,
            message="left the run",
        )
        audit_record(
            actor=actor,
            action="federation_site_leave",
            obj=site,
            campaign=site.campaign_id,
            from_state=old,
            to_state=SiteStatus.LEFT,
            run=site.run_id,
            reason=reason.strip()[:300],
        )
    site.refresh_from_db()
    return site


def federation_site_done(site: FederationSite, rounds: int) -> bool:
    """The site served the run's last round (the ClientApp says so), or the run ended without it."""
    return job_finish(
        site,
        SiteStatus.DONE,
        actor_label="federation ClientApp",
        action="federation_site_done",
        audit={"campaign": site.campaign_id, "run": site.run_id, "rounds": rounds},
        message="done",
    )


# ----------------------------------------------------------------------------- the job


def site_home(site: FederationSite) -> Path:
    """The site's FLWR_HOME for this run: the FAB it received, the SuperNode's log."""
    return Path(settings.DATA_DIR) / "federation" / f"site-{site.pk}" / "flwr"


def node_config(site: FederationSite) -> dict[str, str | int]:
    """What binds a SuperNode to its site: the ClientApp reads the site's own row by it."""
    return {"curatect-site-id": site.pk, "curatect-superlink": site.run.superlink_address}


def federation_site_serve(
    site_id: int, *, worker: str = "", extra_env: dict[str, str] | None = None
) -> FederationSite:
    """The site's job: its SuperNode connected to the coordinator's SuperLink until the run ends
    or the site leaves; the SuperNode and every process it started are stopped however it ends."""
    site = FederationSite.objects.select_related("run").get(pk=site_id)
    if not job_claim(site, worker=worker, message="starting the SuperNode"):
        site.refresh_from_db()
        return site
    home = site_home(site)
    home.mkdir(parents=True, exist_ok=True)
    supernode = None
    try:
        supernode = processes.supernode_start(
            site.run.superlink_address, home, node_config(site), ca=site.run.tls_ca_cert, extra_env=extra_env
        )
        FederationSite.objects.filter(pk=site.pk).update(message="SuperNode serving the run")
        _serve(site, supernode, home)
    except Exception as exc:  # recorded on the row: the site's data manager sees why
        log.exception("federation site %s failed", site.pk)
        job_fail(
            site,
            exc,
            action="federation_site_failed",
            from_states=[SiteStatus.RUNNING],
            audit={"campaign": site.campaign_id, "run": site.run_id},
        )
    finally:
        processes.stop(supernode)
    site.refresh_from_db()
    return site


def _serve(site: FederationSite, supernode, home: Path) -> None:
    while True:
        status = FederationSite.objects.values_list("status", flat=True).get(pk=site.pk)
        if status != SiteStatus.RUNNING:
            return  # done (the last round came back) or left
        run = FederationRun.objects.values("status", "error", "rounds").get(pk=site.run_id)
        if run["status"] == RunStatus.FAILED:
            raise DomainError(f"the federation run failed: {run['error']}", code="run_failed")
        if run["status"] == RunStatus.DONE:
            _settle_after_run(site, run["rounds"])
            return
        if supernode.poll() is not None:
            raise DomainError(
                f"the SuperNode stopped (exit {supernode.returncode}); see {home / 'supernode.log'}",
                code="supernode_stopped",
            )
        time.sleep(POLL_S)


def _settle_after_run(site: FederationSite, rounds: int) -> None:
    """The run finished; the last round's evaluation at this site may still be writing."""
    for _ in range(20):
        if FederationSite.objects.values_list("status", flat=True).get(pk=site.pk) != SiteStatus.RUNNING:
            return
        time.sleep(POLL_S)
    federation_site_done(site, rounds)

"""A hospital's own CurateCT for tests/federation/test_separate_installations.py: run in a
subprocess whose environment (DATABASE_URL, CURATECT_DATA_DIR, CURATECT_MEDIA_ROOT) is that
site's installation, never the test's database. Each step prints one JSON line at the end.

    python -m tests.federation.site_installation setup SOURCES SEED
    python -m tests.federation.site_installation join INVITATION.json
    python -m tests.federation.site_installation report

`setup` makes the institution, its people and a curated export through the real services
(ingest, annotation, three-step QC, export); `join` imports the coordinator's invitation
through the site's own API (and tries the errors a data manager could make), joins the copy
with the export and starts the site's part; `report` reads what the site recorded.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_core.settings")
    import django

    django.setup()


def _manager():
    from core.models import Membership, Role

    return Membership.objects.get(role=Role.DATA_MANAGER, user__username__endswith="-manager").user


def setup(sources: str, seed: str) -> dict[str, Any]:
    """The site's institution is named by its data folder (CURATECT_MEDIA_ROOT=.../<slug>)."""
    from django.conf import settings

    from tests.federation.sites import make_site

    media = Path(settings.MEDIA_ROOT)
    site = make_site(settings, media.parent, Path(sources), media.name, seed=int(seed))
    return {"institution": site.institution.name, "export": site.export.pk, "manager": site.manager.username}


def join(invitation_file: str) -> dict[str, Any]:
    from rest_framework.test import APIClient

    from modelassist.models import DatasetExport

    text = Path(invitation_file).read_text()
    api = APIClient()
    manager = _manager()
    api.force_authenticate(manager)
    out: dict[str, Any] = {}
    # Before the import, the key means nothing in this installation
    export = DatasetExport.objects.get(status="done")
    key = json.loads(text)["key"]
    body = {"key": key, "export": export.pk, "start": False}
    out["join_before_import"] = _answer(api.post("/api/federation/sites/", body, format="json"))
    foreign = json.dumps({**json.loads(text), "version": 99})
    out["foreign_version"] = _answer(
        api.post("/api/federation/invitations/", {"invitation": foreign}, format="json")
    )
    out["oversized"] = _answer(
        api.post("/api/federation/invitations/", {"invitation": text + " " * 70_000}, format="json")
    )
    out["malformed"] = _answer(
        api.post("/api/federation/invitations/", {"invitation": text[:-20]}, format="json")
    )
    out["import"] = _answer(api.post("/api/federation/invitations/", {"invitation": text}, format="json"))
    out["import_again"] = _answer(
        api.post("/api/federation/invitations/", {"invitation": text}, format="json")
    )
    copy = out["import"]["body"]
    out["start_copy"] = _answer(api.post(f"/api/federation/runs/{copy['id']}/start/"))
    out["cancel_copy"] = _answer(api.post(f"/api/federation/runs/{copy['id']}/cancel/", {}, format="json"))
    out["join"] = _answer(api.post("/api/federation/sites/", body, format="json"))
    site = out["join"]["body"]
    out["start_site"] = _answer(api.post(f"/api/federation/sites/{site['id']}/start/"))
    return out


def _answer(response) -> dict[str, Any]:
    return {"status": response.status_code, "body": response.json()}


def report() -> dict[str, Any]:
    from core.models import AuditEvent, Institution
    from federation.models import FederationRound, FederationRun, FederationSite

    run = FederationRun.objects.get()
    site = FederationSite.objects.get()
    ca = Path(run.tls_ca_cert) if run.tls_ca_cert else None
    return {
        "institutions": sorted(Institution.objects.values_list("name", flat=True)),
        "run": {
            "key": str(run.key),
            "is_remote": run.is_remote,
            "coordinator_name": run.coordinator_name,
            "status": run.status,
            "history": run.history,
            "ca_mode": oct(stat.S_IMODE(ca.stat().st_mode)) if ca else None,
            "ca_under_data_dir": bool(ca) and str(ca).startswith(os.environ["CURATECT_DATA_DIR"]),
        },
        "site": {"key": str(site.key), "status": site.status, "error": site.error},
        "rounds": [
            {
                "number": r.number,
                "sample_count": r.sample_count,
                "sent_bytes": r.sent_bytes,
                "sent_sha256": r.sent_sha256,
                "sent_to": r.sent_to,
                "global_sha256": r.global_sha256,
                "participants": r.participants,
                "model_version": r.model_version_id,
                "lineage": r.model_version.metrics.get("federation") if r.model_version else None,
                "campaign_of_version": r.model_version.campaign_id if r.model_version else None,
                "promoted": r.promoted,
                "decision": r.decision,
            }
            for r in FederationRound.objects.filter(site=site)
            .select_related("model_version")
            .order_by("number")
        ],
        "site_campaign": site.campaign_id,
        "audit": sorted(
            AuditEvent.objects.filter(action__startswith="federation_").values_list("action", flat=True)
        ),
    }


if __name__ == "__main__":
    _django()
    step, *args = sys.argv[1:]
    result = {"setup": setup, "join": join, "report": report}[step](*args)
    print(json.dumps(result, default=str))

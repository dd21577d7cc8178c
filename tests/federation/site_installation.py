"""A hospital's own CurateCT for tests/federation/test_separate_installations.py: run in a
subprocess whose environment (DATABASE_URL, CURATECT_DATA_DIR, CURATECT_MEDIA_ROOT) is that
site's installation, never the test's database. Each step prints one JSON line at the end.

    python -m tests.federation.site_installation prepare SOURCES SEED INVITATION.json

It makes the institution (named by the site's data folder), its people and a curated export
through the real services (ingest, annotation, three-step QC, export); then imports the
coordinator's invitation through the site's own API (trying first the errors a data manager
could make), joins the copy with the export and starts the site's part. One process for all
of it: on a busy machine each Python + Django + torch start costs tens of seconds.
"""

from __future__ import annotations

import json
import os
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


if __name__ == "__main__":
    _django()
    step, sources, seed, invitation = sys.argv[1:]
    assert step == "prepare", step
    result = {"setup": setup(sources, seed), "join": join(invitation)}
    print(json.dumps(result, default=str))

"""The site's federation page: the federation runs this site coordinates or joined, their rounds
and figures per round, the outgoing log of what left the site, and joining a run with one of
the site's curated exports or leaving it.

Thin: only data managers open it (others get 404, never 403); the data comes from the JSON
API (federation/urls.py) through frontend/src/pages/federation.ts.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from federation.selectors import managed_institutions
from modelassist.models import DatasetExport


def _exports(institutions) -> list[dict]:
    """The finished exports a site may train on (its own campaigns' curated labels), newest first."""
    rows = (
        DatasetExport.objects.filter(campaign__institution__in=institutions, status="done")
        .select_related("campaign")
        .order_by("-pk")
    )
    return [
        {
            "id": e.pk,
            "version": e.version,
            "campaign": e.campaign.name,
            "cases": (e.summary or {}).get("cases"),
            "splits": (e.summary or {}).get("splits"),
        }
        for e in rows
    ]


@login_required
def federation(request: HttpRequest) -> HttpResponse:
    institutions = managed_institutions(request.user)
    if not institutions.exists():
        raise Http404("Federation runs are managed by data managers")
    return render(
        request,
        "federation/federation.html",
        {
            "page": {
                "institutions": [{"slug": i.slug, "name": i.name} for i in institutions],
                "exports": _exports(institutions),
            }
        },
    )

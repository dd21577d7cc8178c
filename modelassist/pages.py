"""Model-assist browser pages: dataset exports and model versions (with retraining), and the
printable quantification report of a scan.

Thin views: who may open a page is decided here (others get 404, never 403); the data comes
from the JSON API (modelassist/urls.py) through the page's TypeScript module.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from core.manage_pages import campaigns_with_role
from core.models import Role
from core.selectors import campaign_scan_for_page
from modelassist.lazy import network


@login_required
def models(request: HttpRequest) -> HttpResponse:
    managed = campaigns_with_role(request.user, [Role.DATA_MANAGER])
    if not managed:
        raise Http404("Exports and models are managed by data managers")
    return render(
        request,
        "modelassist/models.html",
        {
            "campaigns": [{"id": c.pk, "slug": c.slug, "name": c.name} for c in managed],
            "architectures": sorted(network.ARCHITECTURES),
            "default_architecture": network.DEFAULT_ARCHITECTURE,
        },
    )


@login_required
def report(request: HttpRequest, campaign_id: int, scan_id: int) -> HttpResponse:
    campaign, scan, in_campaign = campaign_scan_for_page(request.user, campaign_id, scan_id)
    if not in_campaign:
        raise Http404("This scan is not part of this campaign")
    return render(request, "modelassist/report.html", {"campaign": campaign, "scan": scan})

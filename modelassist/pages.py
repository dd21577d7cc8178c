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
from core.models import BatchItem, CampaignScan, Role
from core.selectors import campaigns_visible_to, scans_visible_to
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
    campaign = campaigns_visible_to(request.user).filter(pk=campaign_id).first()
    scan = scans_visible_to(request.user).select_related("study").filter(pk=scan_id).first()
    if campaign is None or scan is None:
        raise Http404("No such scan")
    in_campaign = (
        CampaignScan.objects.filter(campaign=campaign, scan=scan).exists()
        or BatchItem.objects.filter(campaign=campaign, scan=scan).exists()
    )
    if not in_campaign:
        raise Http404("This scan is not part of this campaign")
    return render(request, "modelassist/report.html", {"campaign": campaign, "scan": scan})

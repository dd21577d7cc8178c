"""QC browser pages: the checker's and the senior's queues, the check and spot-check pages,
the annotator's findings and the QC dashboard.

Thin views: who may open a page is decided here with the same selectors the API uses, so an
object outside the user's scope answers 404 on the page exactly as it does in the API. The
data comes from the JSON API through each page's TypeScript module.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from core.manage_pages import campaigns_with_role, require_role
from core.models import Role
from core.selectors import campaign_roles, campaign_scan_for_page
from core.services.batches import open_batch_of
from qc import selectors
from qc.models import Check, SpotCheck


def _viewer_url(campaign_id: int, scan_id: int) -> str:
    return reverse("viewer", args=[campaign_id, scan_id])


@login_required
def checks(request: HttpRequest) -> HttpResponse:
    require_role(request.user, Role.CHECKER)
    return render(request, "qc/checks.html")


@login_required
def check(request: HttpRequest, check_id: int) -> HttpResponse:
    try:
        found = selectors.check_for_user(request.user, check_id)
    except Check.DoesNotExist as exc:
        raise Http404("No such check among yours") from exc
    annotation = found.annotation
    viewer = _viewer_url(annotation.campaign_id, annotation.scan_id)
    return render(
        request,
        "qc/check.html",
        {"check": found, "viewer_url": f"{viewer}?check={found.pk}"},
    )


@login_required
def spot_checks(request: HttpRequest) -> HttpResponse:
    require_role(request.user, Role.SENIOR)
    return render(request, "qc/spot_checks.html")


@login_required
def spot_check(request: HttpRequest, spot_check_id: int) -> HttpResponse:
    try:
        found = selectors.spot_check_for_user(request.user, spot_check_id)
    except SpotCheck.DoesNotExist as exc:
        raise Http404("No such spot check among yours") from exc
    annotation = found.annotation
    viewer = _viewer_url(annotation.campaign_id, annotation.scan_id)
    return render(
        request,
        "qc/spot_check.html",
        {"spot_check": found, "viewer_url": f"{viewer}?spot_check={found.pk}"},
    )


@login_required
def findings(request: HttpRequest, campaign_id: int, scan_id: int) -> HttpResponse:
    """The annotator's view of what the reviewers found (anonymised by the API)."""
    campaign, scan, in_campaign = campaign_scan_for_page(request.user, campaign_id, scan_id)
    is_annotator = open_batch_of(request.user, campaign, scan.pk) is not None
    if not in_campaign or not (is_annotator or Role.DATA_MANAGER in campaign_roles(request.user, campaign)):
        raise Http404("Findings are for the annotator of this scan")
    return render(
        request,
        "qc/findings.html",
        {"campaign": campaign, "scan": scan, "viewer_url": _viewer_url(campaign.pk, scan.pk)},
    )


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    allowed = campaigns_with_role(request.user, [Role.DATA_MANAGER, Role.SENIOR])
    if not allowed:
        raise Http404("QC figures are for data managers and senior radiologists")
    choices = [
        {
            "id": c.pk,
            "name": c.name,
            # Only data managers may read the batch board and the audit CSV.
            "manager": Role.DATA_MANAGER in campaign_roles(request.user, c),
        }
        for c in allowed
    ]
    return render(request, "qc/dashboard.html", {"campaigns": choices})

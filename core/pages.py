"""Thin Django views of the browser pages; the pages' data comes from the API (docs/api.md)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from core.manage_pages import workflow_links
from core.models import CampaignMember, Role
from core.selectors import campaign_scan_for_page


class LoginView(auth_views.LoginView):
    template_name = "core/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


def _workflow_roles(user) -> set[str]:
    roles = set(CampaignMember.objects.filter(user=user).values_list("role", flat=True))
    return roles | set(user.memberships.values_list("role", flat=True))


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Annotators go straight to their worklist; anyone with other roles gets a page of links."""
    roles = _workflow_roles(request.user)
    if roles == {Role.ANNOTATOR}:
        return redirect("worklist")
    links = []
    if Role.ANNOTATOR in roles:
        links.append(
            {"url": reverse("worklist"), "label": "Worklist", "description": "your batches to annotate"}
        )
    # The QC and management pages of the user's roles (core/manage_pages.py).
    links += workflow_links(request.user)
    links.append({"url": "/api/docs/", "label": "API", "description": "the HTTP API, for scripts"})
    links.append(
        {
            "url": reverse("api-tokens"),
            "label": "API tokens",
            "description": "keys for scripts, 3D Slicer or OHIF",
        }
    )
    if request.user.is_staff:
        links.append({"url": reverse("admin:index"), "label": "Admin", "description": "Django admin"})
    return render(request, "core/home.html", {"links": links})


@login_required
def worklist(request: HttpRequest) -> HttpResponse:
    return render(request, "core/worklist.html")


@login_required
def viewer(request: HttpRequest, campaign_id: int, scan_id: int) -> HttpResponse:
    # Another institution's scan, or a scan not in this campaign, answers 404 (never 403).
    campaign, scan, in_campaign = campaign_scan_for_page(request.user, campaign_id, scan_id)
    if not in_campaign:
        raise Http404("This scan is not part of this campaign")
    context = {"campaign": campaign, "scan": scan}
    return render(request, "core/viewer.html", context)

"""Data managers' browser pages: the batch board and DICOM import.

Thin views like core/pages.py: they decide who may open a page (anyone else gets
404, never 403) and hand the page the few choices it needs to draw its forms; the data
itself comes from the JSON API (docs/api.md) through the page's TypeScript module.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from core.models import Campaign, CampaignMember, Role, User
from core.selectors import batches_visible_to, campaign_roles, campaigns_visible_to, institutions_of


def roles_of(user: User) -> set[str]:
    """Every workflow role the user holds anywhere (campaign roles and institution roles)."""
    roles = set(CampaignMember.objects.filter(user=user).values_list("role", flat=True))
    return roles | set(user.memberships.values_list("role", flat=True))


def campaigns_with_role(user: User, roles: Iterable[str]) -> list[Campaign]:
    """The campaigns the user sees in which they hold one of `roles`, oldest first."""
    wanted = set(roles)
    return [c for c in campaigns_visible_to(user).order_by("pk") if campaign_roles(user, c) & wanted]


def require_role(user: User, *roles: str) -> None:
    """404 (not 403) for a page that is none of the user's business."""
    if not roles_of(user) & set(roles):
        raise Http404("This page is not part of your work")


def _members(campaign: Campaign, role: str) -> list[dict]:
    users = User.objects.filter(
        campaign_roles__campaign=campaign, campaign_roles__role=role, is_active=True
    ).order_by("username")
    return [{"id": u.pk, "username": u.username} for u in users]


def _campaign_choice(campaign: Campaign) -> dict:
    return {
        "id": campaign.pk,
        "slug": campaign.slug,
        "name": campaign.name,
        "batch_size": campaign.batch_size,
        "annotators": _members(campaign, Role.ANNOTATOR),
    }


@login_required
def batches(request: HttpRequest) -> HttpResponse:
    managed = campaigns_with_role(request.user, [Role.DATA_MANAGER])
    if not managed:
        raise Http404("Batches are managed by data managers")
    return render(
        request,
        "core/manage/batches.html",
        {"campaigns": [_campaign_choice(c) for c in managed]},
    )


@login_required
def batch_board(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = batches_visible_to(request.user).select_related("campaign").filter(pk=batch_id).first()
    if batch is None or Role.DATA_MANAGER not in campaign_roles(request.user, batch.campaign):
        raise Http404("No such batch among the campaigns you manage")
    return render(
        request,
        "core/manage/board.html",
        {"batch": batch, "campaign_choice": _campaign_choice(batch.campaign)},
    )


@login_required
def import_page(request: HttpRequest) -> HttpResponse:
    institutions = list(institutions_of(request.user, Role.DATA_MANAGER).order_by("name"))
    if not institutions:
        raise Http404("Imports are for data managers")
    managed = campaigns_with_role(request.user, [Role.DATA_MANAGER])
    return render(
        request,
        "core/manage/import.html",
        {
            "institutions": [{"slug": i.slug, "name": i.name} for i in institutions],
            "campaigns": [{"slug": c.slug, "name": c.name} for c in managed],
        },
    )


# (url name, label, description, roles that see it). Names of other apps' pages are plain
# strings: the core imports no app above it.
WORKFLOW_PAGES = [
    ("qc-checks", "Checks", "annotations waiting for your verdict", {Role.CHECKER}),
    ("qc-spot-checks", "Spot checks", "sampled scans of checked batches", {Role.SENIOR}),
    (
        "qc-dashboard",
        "QC dashboard",
        "first-pass rate, rounds, agreement, Dice and time per batch, annotator and checker",
        {Role.SENIOR, Role.DATA_MANAGER},
    ),
    ("manage-batches", "Batches", "build, assign and follow batches", {Role.DATA_MANAGER}),
    ("manage-import", "Import", "upload DICOM files or a zip", {Role.DATA_MANAGER}),
    (
        "manage-models",
        "Exports & models",
        "dataset exports, model versions and retraining",
        {Role.DATA_MANAGER},
    ),
    (
        "manage-federation",
        "Federation",
        "federated retraining runs, their rounds and what left this site",
        {Role.DATA_MANAGER},
    ),
]


def workflow_links(user: User) -> list[dict]:
    """Links to the QC and management pages the user's roles open, as the home page lists them."""
    if not user.is_authenticated:
        return []
    roles = roles_of(user)
    links = []
    for name, label, description, allowed in WORKFLOW_PAGES:
        if not roles & allowed:
            continue
        try:
            url = reverse(name)
        except NoReverseMatch:  # that app's pages are not included in the root urls.py
            continue
        links.append({"url": url, "label": label, "description": description})
    return links

"""Reads scoped to the requesting user: institution, campaign role and batch.

An object outside a user's scope is simply not in their querysets, so views answer 404
(not 403) and never reveal that it exists.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils.module_loading import import_string

from core.models import (
    Batch,
    BatchItem,
    Campaign,
    CampaignMember,
    CampaignScan,
    Institution,
    Role,
    Scan,
    User,
)
from core.permissions import annotator_scans_q, campaigns_managed_by, is_data_manager


def institutions_of(user: User, role: str | None = None) -> QuerySet[Institution]:
    memberships = user.memberships.all()
    if role:
        memberships = memberships.filter(role=role)
    return Institution.objects.filter(pk__in=memberships.values("institution_id"))


def campaigns_visible_to(user: User) -> QuerySet[Campaign]:
    if not user.is_authenticated:
        return Campaign.objects.none()
    inst = institutions_of(user).values("pk")
    return Campaign.objects.filter(
        Q(institution__in=inst) | Q(shared_with__in=inst) | Q(members__user=user)
    ).distinct()


def campaign_roles(user: User, campaign: Campaign) -> set[str]:
    roles = set(CampaignMember.objects.filter(campaign=campaign, user=user).values_list("role", flat=True))
    if Role.DATA_MANAGER not in roles and is_data_manager(user, campaign):
        roles.add(Role.DATA_MANAGER)
    return roles


def has_campaign_role(user: User, campaign: Campaign, role: str) -> bool:
    return role in campaign_roles(user, campaign)


@cache
def _access_hooks() -> tuple:
    # Higher layers (QC) grant reviewers access to the scans they review. They register here
    # by dotted path so the core never imports them.
    return tuple(import_string(path) for path in getattr(settings, "CURATECT_SCAN_ACCESS_HOOKS", []))


def scans_visible_to(user: User, campaign: Campaign | int | None = None) -> QuerySet[Scan]:
    """Scans a user may read: managed institutions and campaigns, scans in an open batch of
    theirs (core.permissions), and review assignments. With `campaign`, an annotator's
    access counts only through a batch of that campaign."""
    if not user.is_authenticated:
        return Scan.objects.none()
    managed = institutions_of(user, Role.DATA_MANAGER).values("pk")
    condition = (
        Q(study__institution__in=managed)
        | Q(campaign_scans__campaign__in=campaigns_managed_by(user).values("pk"))
        | annotator_scans_q(user, campaign)
    )
    for hook in _access_hooks():
        condition |= Q(pk__in=hook(user))
    return Scan.objects.filter(condition).distinct()


def scan_for_user(user: User, scan_id: int) -> Scan:
    """Fetch and authorise together; raises Scan.DoesNotExist (→ 404) when out of scope."""
    return scans_visible_to(user).select_related("study").get(pk=scan_id)


def batches_visible_to(user: User) -> QuerySet[Batch]:
    """A data manager's batches, and an annotator's own (closed ones too: their history)."""
    if not user.is_authenticated:
        return Batch.objects.none()
    managed = campaigns_managed_by(user).values("pk")
    return Batch.objects.filter(Q(annotator=user) | Q(campaign__in=managed)).distinct()


def campaign_scan_for_page(user: User, campaign_id: int, scan_id: int) -> tuple[Campaign, Scan, bool]:
    """A page's campaign and scan, fetched and authorised together, and whether the scan belongs to
    the campaign. Another institution's campaign or scan answers 404 (never 403)."""
    campaign = campaigns_visible_to(user).filter(pk=campaign_id).first()
    scan = scans_visible_to(user).select_related("study").filter(pk=scan_id).first()
    if campaign is None or scan is None:
        raise Http404("No such scan")
    in_campaign = (
        CampaignScan.objects.filter(campaign=campaign, scan=scan).exists()
        or BatchItem.objects.filter(campaign=campaign, scan=scan).exists()
    )
    return campaign, scan, in_campaign

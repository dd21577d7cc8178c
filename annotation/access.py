"""Fetch and authorise a campaign's scan for a request together (404 when out of scope)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from rest_framework.request import Request

from core.models import Campaign, Scan
from core.selectors import campaigns_visible_to, scans_visible_to


def campaign_and_scan(request: Request, campaign_id: int, scan_id: int) -> tuple[Campaign, Scan]:
    campaign = get_object_or_404(campaigns_visible_to(request.user), pk=campaign_id)
    # The campaign scopes an annotator's access: only an open batch of *this* campaign counts.
    scan = get_object_or_404(
        scans_visible_to(request.user, campaign).filter(campaign_scans__campaign=campaign), pk=scan_id
    )
    return campaign, scan

"""People rules of annotations: who reads which revisions, who may write.

- Whoever may read the scan in the campaign (core.selectors.scans_visible_to: its
  annotator while it is in an open batch of theirs, a data manager, its checkers and senior)
  reads the annotation and every revision of it.
- A **former annotator** (the batch closed, was reassigned, or the scan was batched again for
  someone else) keeps read-only access to the revisions they authored, and nothing else: not
  the annotation's head or state, not revisions of others (later work), not the scan's pixels;
  no saves, no submits, no region grow. Everything else answers 404, as for a stranger.
- Only the annotator of the open batch holding the scan writes (core.permissions).
"""

from __future__ import annotations

from django.db.models import QuerySet

from annotation.models import Revision, RevisionSource
from core.api_errors import NotFound
from core.models import Campaign, User
from core.permissions import annotates
from core.selectors import campaigns_visible_to, scans_visible_to


def may_read_scan(user: User, campaign_id: int, scan_id: int) -> bool:
    """The scan, its pixels and all of the campaign's annotation of it (head, every revision)."""
    return (
        campaigns_visible_to(user).filter(pk=campaign_id).exists()
        and scans_visible_to(user, campaign_id)
        .filter(pk=scan_id, campaign_scans__campaign=campaign_id)
        .exists()
    )


def revisions_readable_by(user: User, campaign_id: int, scan_id: int) -> QuerySet[Revision]:
    """The revisions of the campaign's annotation of the scan that the user may read."""
    if not campaigns_visible_to(user).filter(pk=campaign_id).exists():
        return Revision.objects.none()
    revisions = Revision.objects.filter(annotation__campaign_id=campaign_id, annotation__scan_id=scan_id)
    if may_read_scan(user, campaign_id, scan_id):
        return revisions
    return revisions.filter(author=user, source=RevisionSource.HUMAN)


def require_annotator(user: User, campaign: Campaign, scan_id: int) -> None:
    """Writes are for the annotator of the open batch holding the scan; anyone else gets 404."""
    if not annotates(user, campaign, scan_id):
        raise NotFound("this scan is not in one of your open batches")

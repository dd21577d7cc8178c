"""People rules of the core domain, in one place: who manages a campaign, who annotates a scan.

- **Data manager.** A data manager of the institution that owns a campaign manages every
  campaign of that institution; a campaign member with the data-manager role manages that
  campaign (e.g. a campaign shared by another institution).
- **Annotator.** An annotator works on a scan of a campaign (reads it and its annotation,
  loads its pixels, grows regions, saves, submits, revises) only while the scan is in an
  *open* batch of that campaign assigned to them. QC never closes a batch (checks, revisions
  and spot checks all happen while it is open), so the revise loop keeps working. Once the
  batch is closed, or reassigned to another annotator, or the scan is batched again for
  someone else, that access ends; what a former annotator still reads is their own revisions
  (annotation.permissions).

Views turn "not allowed to see" into 404 through the querysets built from these rules.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from core.api_errors import Forbidden
from core.models import Batch, BatchItem, Campaign, Institution, Role, User


def _managed_institutions(user: User) -> QuerySet[Institution]:
    return Institution.objects.filter(
        pk__in=user.memberships.filter(role=Role.DATA_MANAGER).values("institution_id")
    )


def campaigns_managed_by(user: User) -> QuerySet[Campaign]:
    if not user.is_authenticated:
        return Campaign.objects.none()
    return Campaign.objects.filter(
        Q(institution__in=_managed_institutions(user).values("pk"))
        | Q(members__user=user, members__role=Role.DATA_MANAGER)
    )


def is_data_manager(user: User, campaign: Campaign) -> bool:
    return campaigns_managed_by(user).filter(pk=campaign.pk).exists()


def require_data_manager(user: User, campaign: Campaign, action: str, *, code: str = "wrong_role") -> None:
    """403 with a reason: `action` finishes "only a data manager of this campaign can …"."""
    if not is_data_manager(user, campaign):
        raise Forbidden(f"only a data manager of this campaign can {action}", code=code)


def annotator_scans_q(user: User, campaign: Campaign | int | None = None) -> Q:
    """Scan condition: in an open batch (of `campaign`, if given) assigned to the user.

    One Q, so the three conditions meet on the same batch item (one join): an open batch of
    someone else plus a closed one of the user's never adds up to access."""
    on_item = {
        "batch_items__batch__annotator": user,
        "batch_items__is_open": True,
        "batch_items__batch__status": Batch.Status.OPEN,
    }
    if campaign is not None:
        on_item["batch_items__campaign"] = campaign
    return Q(**on_item)


def open_item_annotated_by(user: User, campaign: Campaign | int, scan_id: int) -> BatchItem | None:
    """The open batch item of the campaign holding the scan, if the user is its annotator."""
    return (
        BatchItem.objects.filter(
            campaign=campaign,
            scan_id=scan_id,
            is_open=True,
            batch__status=Batch.Status.OPEN,
            batch__annotator=user,
        )
        .select_related("batch")
        .first()
    )


def annotates(user: User, campaign: Campaign | int, scan_id: int) -> bool:
    return open_item_annotated_by(user, campaign, scan_id) is not None

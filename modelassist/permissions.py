"""People rules of model assist: exporting datasets, starting training runs, re-running
pre-segmentation and uploading, activating or deactivating model versions are for the
campaign's data managers (who that is: core.permissions)."""

from __future__ import annotations

from core.models import Campaign, User
from core.permissions import require_data_manager


def require_manager(user: User, campaign: Campaign, action: str) -> None:
    """403 "only a data manager of this campaign can <action>"."""
    require_data_manager(user, campaign, action)

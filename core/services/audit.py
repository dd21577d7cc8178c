"""Audit events: written inside the same transaction as the change they describe."""

from __future__ import annotations

from typing import Any

from django.db import models

from core.models import AuditEvent, Campaign, Scan, User


def audit_record(
    *,
    actor: User | None,
    action: str,
    obj: models.Model,
    from_state: str = "",
    to_state: str = "",
    campaign: Campaign | int | None = None,
    scan: Scan | int | None = None,
    revision_id: int | None = None,
    actor_label: str = "",
    **details: Any,
) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor if actor is not None and actor.pk else None,
        actor_label=actor_label or (actor.username if actor is not None else ""),
        action=action,
        object_type=obj._meta.model_name or obj.__class__.__name__.lower(),
        object_id=str(obj.pk),
        campaign_id=campaign.pk if isinstance(campaign, Campaign) else campaign,
        scan_id=scan.pk if isinstance(scan, Scan) else scan,
        from_state=from_state,
        to_state=to_state,
        revision_id=revision_id,
        details=details,
    )

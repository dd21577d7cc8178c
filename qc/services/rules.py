"""Workflow helpers and input checks shared by the QC services.

The rules about people (never your own work, two different checkers, blindness) live in
qc.permissions; the names the services use are imported here so `rules.makers_of` and the
like keep working.
"""

from __future__ import annotations

import math
from typing import Any

from django.db.models import Count, Q, QuerySet

from annotation.models import Annotation
from core.api_errors import DomainError
from core.models import Campaign, Role, Scan, User
from qc.models import FindingKind, SpotCheck, Verdict
from qc.permissions import (  # noqa: F401  (re-exported: the services call rules.makers_of etc.)
    checkers_of,
    makers_of,
    open_item_of,
    require_checker_eligible,
    require_senior_eligible,
)

MAX_FINDINGS = 200
MAX_FINDING_TEXT = 2000
MAX_TIME_SPENT_S = 24 * 3600


# --- who checks next ---------------------------------------------------------------------


def _by_load(campaign: Campaign, role: str, relation: str) -> QuerySet[User]:
    pending = Count(relation, filter=Q(**{f"{relation}__verdict": Verdict.PENDING}))
    return (
        User.objects.filter(campaign_roles__campaign=campaign, campaign_roles__role=role, is_active=True)
        .annotate(load=pending)
        .order_by("load", "pk")
    )


def checkers_by_load(campaign: Campaign, *, exclude: set[int]) -> list[User]:
    """Eligible checkers, least-loaded first (fewest pending checks anywhere), then by id."""
    users = _by_load(campaign, Role.CHECKER, "checks")
    return list(users.exclude(pk__in=exclude))


def seniors_by_load(campaign: Campaign, *, exclude: set[int]) -> list[User]:
    users = _by_load(campaign, Role.SENIOR, "spot_checks")
    return list(users.exclude(pk__in=exclude))


# --- inputs -----------------------------------------------------------------------------


def clean_time_spent(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_TIME_SPENT_S:
        raise DomainError("time_spent_s must be a number of seconds from 0 to 86400", code="bad_time")
    return float(value)


def clean_verdict(value: Any) -> str:
    if value not in (Verdict.PASS, Verdict.FAIL):
        raise DomainError("verdict must be 'pass' or 'fail'", code="bad_verdict")
    return str(value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _clean_finding(i: int, raw: Any, scan: Scan) -> dict:
    where = f"finding {i}"
    if not isinstance(raw, dict):
        raise DomainError(
            f"{where} must be an object with slice, position, kind and text", code="bad_findings"
        )
    unknown = set(raw) - {"slice", "position", "kind", "text"}
    if unknown:
        raise DomainError(f"{where} has unknown fields {sorted(unknown)}", code="bad_findings")
    kind = raw.get("kind")
    if kind not in FindingKind.values:
        raise DomainError(f"{where}: kind must be one of {FindingKind.values}", code="bad_findings")
    text = raw.get("text", "")
    if not isinstance(text, str) or len(text) > MAX_FINDING_TEXT:
        raise DomainError(f"{where}: text must be at most {MAX_FINDING_TEXT} characters", code="bad_findings")
    z, position = raw.get("slice"), raw.get("position")
    # A wrong scan-level label has no place in the volume; every other finding points at one.
    if kind == FindingKind.WRONG_SCAN_LABEL and z is None and position is None:
        return {"slice": None, "position": None, "kind": kind, "text": text}
    if not isinstance(z, int) or isinstance(z, bool) or not 0 <= z < scan.slices:
        raise DomainError(
            f"{where}: slice must be a z index from 0 to {scan.slices - 1}", code="bad_findings"
        )
    if not (isinstance(position, list | tuple) and len(position) == 2 and all(_number(v) for v in position)):
        raise DomainError(f"{where}: position must be [x, y] in pixels", code="bad_findings")
    x, y = position
    if not (0 <= x < scan.columns and 0 <= y < scan.rows):
        raise DomainError(
            f"{where}: position [x, y] must lie within {scan.columns}×{scan.rows} pixels", code="bad_findings"
        )
    return {"slice": z, "position": [x, y], "kind": kind, "text": text}


def clean_findings(raw: Any, scan: Scan, verdict: str) -> list[dict]:
    """Validate findings: [{slice (z), position [x, y] in pixels, kind, text}]; a fail needs one."""
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise DomainError("findings must be a list", code="bad_findings")
    if len(raw) > MAX_FINDINGS:
        raise DomainError(f"at most {MAX_FINDINGS} findings per verdict", code="bad_findings")
    findings = [_clean_finding(i, f, scan) for i, f in enumerate(raw, start=1)]
    if verdict == Verdict.FAIL and not findings:
        raise DomainError(
            "a fail needs at least one finding saying what to fix, and where", code="findings_required"
        )
    return findings


def pending_spot_check_of(annotation: Annotation) -> SpotCheck | None:
    return SpotCheck.objects.filter(annotation=annotation, verdict=Verdict.PENDING).first()

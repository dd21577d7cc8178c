"""People rules of QC, in one place (DESIGN: who uses it; the workflow steps 5–7).

- **Never your own work.** No one checks or spot-checks an annotation they made; the two
  checkers of an annotation are two different people; the senior of a spot check is neither
  a maker nor a checker of that scan.
- **Blindness.** Neither checker sees the other's verdict until both gave theirs. Whoever
  holds a check of a round that still has a verdict pending sees no other check of that round
  (nor its verdict, nor its audit events), whatever other roles (data manager, senior) they
  also hold. The queue and detail selectors, the batch board and the audit CSV all ask here.
- Managing QC (reassigning, reopening, the board, the audit trail) is for data managers
  (core.permissions).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Exists, OuterRef, Q, QuerySet

from annotation.models import Annotation, Revision, RevisionSource
from core.api_errors import DomainError
from core.models import BatchItem, Role, User
from core.selectors import has_campaign_role
from qc.models import Check, CheckerPair, Verdict

# --- never your own work ------------------------------------------------------------------


def open_item_of(annotation: Annotation) -> BatchItem | None:
    """The open batch item holding the annotation's scan in its campaign (at most one)."""
    return (
        BatchItem.objects.filter(campaign_id=annotation.campaign_id, scan_id=annotation.scan_id, is_open=True)
        .select_related("batch")
        .first()
    )


def makers_of(annotation: Annotation) -> set[int]:
    """People who made the annotation: authors of its human revisions and its batch's annotator."""
    makers = set(
        Revision.objects.filter(
            annotation=annotation, source=RevisionSource.HUMAN, author__isnull=False
        ).values_list("author_id", flat=True)
    )
    item = open_item_of(annotation)
    if item is not None and item.batch.annotator_id is not None:
        makers.add(item.batch.annotator_id)
    return makers


def checkers_of(annotation: Annotation) -> set[int]:
    """Everyone who holds or held a check of the annotation, and its current pair."""
    ids = set(Check.objects.filter(annotation=annotation).values_list("checker_id", flat=True))
    pair = CheckerPair.objects.filter(annotation=annotation).first()
    if pair is not None:
        ids |= {pair.checker_a_id, pair.checker_b_id}
    return ids


def require_checker_eligible(user: User, annotation: Annotation, *, other_checker_id: int | None) -> None:
    if not has_campaign_role(user, annotation.campaign, Role.CHECKER) or not user.is_active:
        raise DomainError(f"{user.username} is not a checker of this campaign", code="not_checker")
    if user.pk in makers_of(annotation):
        raise DomainError(f"{user.username} made this annotation and cannot check it", code="own_work")
    if user.pk == other_checker_id:
        raise DomainError(
            f"{user.username} already holds the other check; the two checkers must differ",
            code="same_checker",
        )


def require_senior_eligible(user: User, annotation: Annotation) -> None:
    if not has_campaign_role(user, annotation.campaign, Role.SENIOR) or not user.is_active:
        raise DomainError(f"{user.username} is not a senior radiologist of this campaign", code="not_senior")
    if user.pk in makers_of(annotation) | checkers_of(annotation):
        raise DomainError(
            f"{user.username} annotated or checked this scan and cannot spot-check it", code="own_work"
        )


# --- blindness ------------------------------------------------------------------------------


def _same_round() -> QuerySet[Check]:
    return Check.objects.filter(annotation=OuterRef("annotation"), round=OuterRef("round"))


def holds_check_in_round(user: User) -> Q:
    """On Check querysets: the user holds a check of this check's round."""
    return Q(Exists(_same_round().filter(checker=user)))


def round_open() -> Q:
    """On Check querysets: a verdict of this check's round is still pending."""
    return Q(Exists(_same_round().filter(verdict=Verdict.PENDING)))


def blind_to_round(user: User) -> Q:
    """On Check querysets: the user holds a check of this check's open round, so may see no
    other check of it. Combine with `~` to keep what the user may see."""
    return holds_check_in_round(user) & round_open()


def checks_hidden_from(user: User) -> QuerySet[Check]:
    """Other people's checks of the rounds the user is blind to."""
    return Check.objects.filter(blind_to_round(user)).exclude(checker=user)


def round_closed(round_checks: Iterable[Check]) -> bool:
    """Both verdicts of the round are in (for rounds already loaded)."""
    return all(c.verdict != Verdict.PENDING for c in round_checks)


def is_blind(viewer: User, round_checks: list[Check]) -> bool:
    """The viewer holds a check of this (loaded) round and a verdict of it is still pending."""
    return not round_closed(round_checks) and any(c.checker_id == viewer.pk for c in round_checks)

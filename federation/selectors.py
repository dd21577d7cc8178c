"""Reads of federation runs and sites, scoped to the requesting data manager's institutions:
a run is visible to its coordinator's data managers and to those of the sites that joined it;
anything else answers 404."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from core.api_errors import NotFound
from core.models import Institution, Role, User
from core.selectors import institutions_of
from federation.models import FederationRound, FederationRun, FederationSite


def managed_institutions(user: User) -> QuerySet[Institution]:
    if not user.is_authenticated:
        return Institution.objects.none()
    return institutions_of(user, Role.DATA_MANAGER)


def runs_visible_to(user: User) -> QuerySet[FederationRun]:
    mine = managed_institutions(user).values("pk")
    return FederationRun.objects.filter(Q(institution__in=mine) | Q(sites__institution__in=mine)).distinct()


def run_for_user(user: User, run_id: int) -> FederationRun:
    run = runs_visible_to(user).filter(pk=run_id).first()
    if run is None:
        raise NotFound("no such federation run", code="not_found")
    return run


def run_by_key_for_user(user: User, key: str) -> FederationRun:
    """A run a site's data manager joins by the key the coordinator gave them (any data manager
    holding the key may see the run's declaration). A participant copy of a run coordinated
    elsewhere belongs to the institution that imported its invitation."""
    run = FederationRun.objects.filter(key=key).first() if managed_institutions(user).exists() else None
    if (
        run is not None
        and run.is_remote
        and not managed_institutions(user).filter(pk=run.institution_id).exists()
    ):
        run = None
    if run is None:
        raise NotFound(
            "no federation run has this key in this installation; for a run declared at another "
            "hospital, import its invitation first",
            code="not_found",
        )
    return run


def sites_visible_to(user: User) -> QuerySet[FederationSite]:
    """A site is visible to its own data managers and to the coordinator's."""
    mine = managed_institutions(user).values("pk")
    return FederationSite.objects.filter(Q(institution__in=mine) | Q(run__institution__in=mine))


def site_for_user(user: User, site_id: int) -> FederationSite:
    site = sites_visible_to(user).select_related("run").filter(pk=site_id).first()
    if site is None:
        raise NotFound("no such federation site", code="not_found")
    return site


def own_sites(user: User) -> QuerySet[FederationSite]:
    """The sites this data manager answers for (join, leave, start)."""
    return FederationSite.objects.filter(institution__in=managed_institutions(user).values("pk"))


def rounds_of_site(site: FederationSite) -> QuerySet[FederationRound]:
    return FederationRound.objects.filter(site=site).order_by("number")

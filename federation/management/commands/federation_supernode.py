"""Run a site's SuperNode for a federation run in the foreground (what the site's `train`
worker's task does): it serves the run until the run ends or the site leaves."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from federation.models import FederationSite, SiteStatus
from federation.services.sites import federation_site_serve


class Command(BaseCommand):
    help = "Run the SuperNode of a started (queued) federation site until the run ends or the site leaves."

    def add_arguments(self, parser) -> None:
        parser.add_argument("site_id", type=int)

    def handle(self, *args, site_id: int, **options) -> None:
        site = FederationSite.objects.filter(pk=site_id).first()
        if site is None:
            raise CommandError(f"no federation site {site_id}")
        if site.status != SiteStatus.QUEUED:
            raise CommandError(
                f"site {site_id} is {site.status}; start it first (POST /api/federation/sites/{site_id}/start/)"
            )
        site = federation_site_serve(site_id, worker="manage.py federation_supernode")
        self.stdout.write(f"federation site {site.pk}: {site.status} {site.error}".rstrip())
        if site.status == SiteStatus.FAILED:
            raise CommandError(site.error)

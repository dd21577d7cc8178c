"""manage.py export_dataset --campaign SLUG: write a new dataset version of the campaign now."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.api_errors import DomainError
from core.models import Campaign
from modelassist.models import JobStatus
from modelassist.selectors import media_path
from modelassist.services.export import export_request, export_run


class Command(BaseCommand):
    help = "Export the curated labels of a campaign's approved batches as a new dataset version."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--campaign", required=True, help="campaign slug")

    def handle(self, *args, campaign: str, **options) -> None:
        try:
            target = Campaign.objects.get(slug=campaign)
        except Campaign.DoesNotExist as exc:
            raise CommandError(f"no campaign with slug {campaign!r}") from exc
        try:
            export = export_request(actor=None, campaign=target, enqueue=False)
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        export = export_run(
            export.pk, lambda fraction, message: self.stderr.write(f"{fraction:5.0%} {message}")
        )
        if export.status != JobStatus.DONE:
            raise CommandError(f"export failed: {export.error}")
        summary = export.summary
        self.stdout.write(
            f"{target.slug} v{export.version}: {summary['cases']} cases {summary['splits']} "
            f"in {media_path(export.path)}\ncontent sha256 {export.content_sha256}"
        )

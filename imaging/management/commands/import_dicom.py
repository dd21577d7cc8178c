"""manage.py import_dicom PATH --institution SLUG [--campaign SLUG]"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.models import Campaign, Institution
from imaging.ingest.service import import_job_run
from imaging.models import ImportJob


class Command(BaseCommand):
    help = "Import DICOM from a file, folder or zip: pseudonymise, check, group and store."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--institution", required=True, help="institution slug, e.g. demo")
        parser.add_argument("--campaign", help="campaign slug to add the scans to")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, path: Path, institution: str, campaign: str | None, **opts):
        try:
            inst = Institution.objects.get(slug=institution)
        except Institution.DoesNotExist as exc:
            raise CommandError(f"no institution with slug {institution!r}") from exc
        camp = None
        if campaign:
            camp = Campaign.objects.filter(slug=campaign).first()
            if camp is None:
                raise CommandError(f"no campaign with slug {campaign!r}")
        job = ImportJob.objects.create(institution=inst, campaign=camp, source=str(path.resolve()))

        def progress(fraction: float, message: str) -> None:
            if sys.stderr.isatty():
                sys.stderr.write(f"\r{fraction:6.1%} {message:60.60}")

        job = import_job_run(job, progress)
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        report = job.report
        if opts["json"]:
            self.stdout.write(json.dumps(report, indent=2))
            return
        if "error" in report:
            raise CommandError(report["error"])
        self.stdout.write(
            f"{len(report['scans_created'])} scan(s) imported, {len(report['scans_existing'])} already present"
        )
        for item in report["rejected_files"]:
            self.stdout.write(f"  rejected file {item['file']}: {item['reason']}")
        for item in report["rejected_series"]:
            self.stdout.write(f"  rejected {item['series']}: {item['reason']}")

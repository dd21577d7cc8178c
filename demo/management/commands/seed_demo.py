"""manage.py seed_demo: the demo institution, campaign, one user per role, phantom studies.

Idempotent: a second run changes nothing and prints the same logins.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import transaction

from core.label_schema import COVID19_SCHEMA
from core.models import Batch, Campaign, CampaignMember, CampaignScan, Institution, Membership, Role, User
from core.services.batches import batch_build
from demo.phantom import GROUND_TRUTH_FILE, write_phantom_study
from imaging.ingest.service import ingest_path

DEMO_USERS = [
    ("annotator", [Role.ANNOTATOR]),
    ("annotator2", [Role.ANNOTATOR]),
    ("checker1", [Role.CHECKER]),
    ("checker2", [Role.CHECKER]),
    ("senior", [Role.SENIOR]),
    ("manager", [Role.DATA_MANAGER]),
]


class Command(BaseCommand):
    help = "Load demo data: institution 'demo', campaign 'covid19', a user per role, phantom CT studies."

    def add_arguments(self, parser):
        parser.add_argument("--scans", type=int, default=int(os.environ.get("CURATECT_DEMO_SCANS", 6)))
        parser.add_argument("--slices", type=int, default=int(os.environ.get("CURATECT_DEMO_SLICES", 80)))
        parser.add_argument("--size", type=int, default=int(os.environ.get("CURATECT_DEMO_SIZE", 256)))
        parser.add_argument("--no-batch", action="store_true", help="do not build the first batch")

    def handle(self, *args, scans: int, slices: int, size: int, no_batch: bool, **opts):
        password = os.environ.get("CURATECT_DEMO_PASSWORD", "curatect-demo")
        with transaction.atomic():
            institution, _ = Institution.objects.get_or_create(
                slug="demo",
                # storescu's default calling AE title, so `storescu -aec CURATECT localhost 11112 …` works.
                defaults={"name": "Demo Hospital", "allowed_ae_titles": ["STORESCU", "DEMO_PACS"]},
            )
            manager = self._users(institution, password)["manager"]
            campaign, _ = Campaign.objects.get_or_create(
                slug="covid19",
                defaults={
                    "name": "COVID-19 lesions",
                    "institution": institution,
                    "label_schema": COVID19_SCHEMA,
                },
            )
            for username, roles in DEMO_USERS:
                user = User.objects.get(username=username)
                for role in roles:
                    CampaignMember.objects.get_or_create(campaign=campaign, user=user, role=role)
        have = CampaignScan.objects.filter(campaign=campaign).count()
        if have < scans:
            self._phantoms(institution, campaign, have, scans, slices, size)
        if not no_batch and not Batch.objects.filter(campaign=campaign).exists():
            annotator = User.objects.get(username="annotator")
            batch = batch_build(
                actor=manager, campaign=campaign, size=max(1, scans // 2), annotator=annotator
            )
            self.stdout.write(f"Batch {batch.name} of {batch.items.count()} scans assigned to annotator")
        self.stdout.write(self.style.SUCCESS(f"Demo logins (password for all: {password}):"))
        for username, roles in DEMO_USERS:
            self.stdout.write(f"  {username:<11} {', '.join(r.label for r in roles)}")

    def _users(self, institution: Institution, password: str) -> dict[str, User]:
        users = {}
        for username, roles in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
                user.save()
            for role in roles:
                Membership.objects.get_or_create(user=user, institution=institution, role=role)
            users[username] = user
        return users

    def _phantoms(
        self, institution: Institution, campaign: Campaign, start: int, scans: int, slices: int, size: int
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="curatect-demo-") as tmp:
            for i in range(start, scans):
                # Two scans per patient, a week apart, so serial reports have something to show.
                patient = i // 2
                folder = write_phantom_study(
                    Path(tmp) / "series" / f"scan{i}",
                    slices=slices,
                    rows=size,
                    cols=size,
                    seed=i,
                    patient_id=f"DEMO-{patient:03d}",
                    patient_name=f"DEMO^PATIENT{patient}",
                    study_date=f"202003{10 + 7 * (i % 2):02d}",
                )
                # Keep the ground truth out of the import folder: it is not DICOM.
                (folder / GROUND_TRUTH_FILE).rename(Path(tmp) / f"truth{i}.npz")
            report = ingest_path(Path(tmp) / "series", institution=institution, campaign_id=campaign.pk)
        self.stdout.write(f"Imported {len(report.scans_created)} phantom scans")

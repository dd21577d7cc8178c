"""manage.py seed_demo: the demo institution, campaign, one user per role, phantom studies.

Besides the scans a newcomer annotates, it curates phantom cohorts of two hospitals through the
real QC services (annotator2's revisions are the phantoms' ground truth and their pattern's
diagnosis — COVID-19, other pulmonary infection, no imaging signs of infection —, both checkers
pass, the senior spot-checks and approves), so that one "Start retraining" click shows the whole
loop: export, training, evaluation on the held-out test split, promoted or kept with the figures.
Each hospital's scans are rendered in its own scanner style (demo.phantoms.cohorts).
Fewer than three hospitals: the split is by patient (see modelassist/services/splits.py).
Phantom figures test the pipeline, not clinical accuracy.

Idempotent: a second run changes nothing and prints the same logins.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand
from django.db import transaction

from core.label_schema import COVID19_SCHEMA
from core.models import Batch, Campaign, CampaignMember, CampaignScan, Institution, Membership, Role, User
from core.services.batches import batch_build
from demo.curation import curate_batches
from demo.phantom import GROUND_TRUTH_FILE, write_ct_series, write_phantom_study
from demo.phantoms.cohorts import cohort
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
        parser.add_argument(
            "--curated",
            type=int,
            default=int(os.environ.get("CURATECT_DEMO_CURATED", 36)),
            help="phantoms curated through the QC services, split between two hospitals (0: none); "
            "36 give the 5 test cases a promotion decision needs",
        )
        parser.add_argument(
            "--curated-slices", type=int, default=int(os.environ.get("CURATECT_DEMO_CURATED_SLICES", 40))
        )
        parser.add_argument(
            "--curated-size", type=int, default=int(os.environ.get("CURATECT_DEMO_CURATED_SIZE", 128))
        )

    def handle(
        self,
        *args,
        scans: int,
        slices: int,
        size: int,
        no_batch: bool,
        curated: int,
        curated_slices: int,
        curated_size: int,
        **opts,
    ):
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
        if curated > 0:
            self._curated(institution, campaign, curated, curated_slices, curated_size)
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

    # ------------------------------------------------------------------------- curated phantoms

    def _curated(self, home: Institution, campaign: Campaign, n: int, slices: int, size: int) -> None:
        """n phantoms of two hospitals (one scan per patient), each hospital's one approved batch."""
        north, _ = Institution.objects.get_or_create(
            slug="demo-north", defaults={"name": "North Demo Hospital"}
        )
        campaign.shared_with.add(north)
        started = time.monotonic()
        made = 0
        for k, institution in enumerate((home, north)):
            name = f"curated-{institution.slug}"
            if Batch.objects.filter(campaign=campaign, name=name).exists():
                continue
            count = (n + 1 - k) // 2
            labelled = self._import_curated(institution, campaign, k, count, slices, size)
            curate_batches(
                campaign,
                manager=User.objects.get(username="manager"),
                annotator=User.objects.get(username="annotator2"),
                labelled=labelled,
                name=name,
                annotate_s=300,
                check_s=60,
                spot_s=45,
            )
            made += len(labelled)
        if made:
            self.stdout.write(
                f"Curated {made} phantom scans of 2 hospitals through the QC services "
                f"({time.monotonic() - started:.0f} s): 'Start retraining' on the models page trains on them"
            )

    def _import_curated(
        self, institution: Institution, campaign: Campaign, index: int, count: int, slices: int, size: int
    ) -> list[tuple[object, np.ndarray, str]]:
        """A cohort of hospital `index` (its scanner style, the three patterns), imported:
        [(scan, lesion truth, diagnosis)]."""
        from core.models import Scan

        cases = {}
        with tempfile.TemporaryDirectory(prefix="curatect-curated-") as tmp:
            for case in cohort(count, institution=index, seed=1000, slices=slices, rows=size, cols=size):
                patient = f"CUR-{institution.slug.upper()}-{case.patient_id}"
                write_ct_series(
                    case.phantom.hu,
                    Path(tmp) / "series" / patient,
                    spacing=case.phantom.spacing,
                    origin=case.phantom.origin,
                    patient_id=patient,
                    patient_name=f"CURATED^{case.patient_id}",
                    institution_name=institution.name,
                    scanner=case.style,
                )
                cases[patient] = case
            report = ingest_path(Path(tmp) / "series", institution=institution, campaign_id=campaign.pk)
        scans = (
            Scan.objects.filter(pk__in=report.scans_created).select_related("study__patient").order_by("pk")
        )
        # The re-identification table links each scan back to its phantom (one scan per patient).
        out = []
        for scan in scans:
            case = cases[scan.study.patient.original_patient_id]
            out.append((scan, case.phantom.lesions, case.diagnosis))
        return out

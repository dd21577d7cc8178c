"""Start Django on a throwaway SQLite database and data folder, so benchmarks touch nothing real."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.testdata import MissingTestData, lung1_dir  # noqa: E402  (ROOT is on sys.path only now)
from tools.testdata import lung1_file as checked_lung1_file  # noqa: E402

# Resolved now: setup() points CURATECT_DATA_DIR at the bench's throwaway folder.
LUNG1_DIR = lung1_dir()


def lung1_file(name: str) -> Path:
    """lung1_image.nrrd or lung1_label.nrrd, as `make testdata` keeps them; exits saying so if absent."""
    try:
        return checked_lung1_file(name, LUNG1_DIR)
    except MissingTestData as missing:
        raise SystemExit(f"error: {missing}") from None


def setup() -> Path:
    work = Path(tempfile.mkdtemp(prefix="curatect-bench-"))
    os.environ["CURATECT_DATA_DIR"] = str(work)
    os.environ["DATABASE_URL"] = f"sqlite:///{work / 'bench.sqlite3'}"
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_core.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return work


def cast():
    """The demo cast on the throwaway database: institution, campaign, annotator, manager."""
    from core.label_schema import COVID19_SCHEMA
    from core.models import Campaign, CampaignMember, Institution, Membership, Role, User

    inst = Institution.objects.create(slug="bench", name="Bench Hospital")
    campaign = Campaign.objects.create(
        slug="bench", name="Bench", institution=inst, label_schema=COVID19_SCHEMA
    )
    people = {}
    for name, role in [("annotator", Role.ANNOTATOR), ("manager", Role.DATA_MANAGER)]:
        user = User.objects.create_user(username=name, password="x")
        Membership.objects.create(user=user, institution=inst, role=role)
        CampaignMember.objects.create(campaign=campaign, user=user, role=role)
        people[name] = user
    return inst, campaign, people


def phantom_series(out: Path, **kw) -> tuple[Path, object]:
    """Write a phantom series holding only DICOM; returns (folder, its ground truth)."""
    from demo.phantom import GROUND_TRUTH_FILE, load_ground_truth, write_phantom_study

    folder = write_phantom_study(out, **kw)
    truth_file = out.parent / f"{out.name}-truth.npz"
    (folder / GROUND_TRUTH_FILE).rename(truth_file)
    return folder, load_ground_truth(truth_file)

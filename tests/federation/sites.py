"""Hospitals for the federation tests: each site is its own institution with its own campaign,
people, data folder (its MEDIA_ROOT: DICOM, volume cache, export, model files) and curated
export, all made through the real services (ingest, annotation, three-step QC, export)."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.conftest import make_series, truth_of
from tests.modelassist.curated import approve, label_volume

ROLES = ("annotator", "checker1", "checker2", "senior", "manager")
# 1 local epoch of a few 32-pixel slices: the point is the plumbing, not the Dice.
TINY_TRAIN = {"batch_size": 4, "slices_per_case": 4, "crop": 0, "max_minutes": 2.0, "classifier_epochs": 2}
# Curated diagnoses alternate, so every site's classifier has two classes to learn.
DIAGNOSES = ("COVID-19", "other pulmonary infection")


@dataclass
class Site:
    slug: str
    institution: Any
    campaign: Any
    manager: Any
    export: Any
    media: Path


def _people(slug: str, institution, campaign) -> dict[str, Any]:
    from core.models import CampaignMember, Membership, Role, User

    roles = {
        "annotator": Role.ANNOTATOR,
        "checker1": Role.CHECKER,
        "checker2": Role.CHECKER,
        "senior": Role.SENIOR,
        "manager": Role.DATA_MANAGER,
    }
    people = {}
    for name in ROLES:
        user = User.objects.create_user(username=f"{slug}-{name}", password="pw")
        Membership.objects.create(user=user, institution=institution, role=roles[name])
        CampaignMember.objects.create(campaign=campaign, user=user, role=roles[name])
        people[name] = user
    return people


def make_site(
    settings, root: Path, sources: Path, slug: str, *, seed: int, scans: int = 4, cast=None
) -> Site:
    """One hospital: `scans` phantom patients imported, approved and exported into its own folder
    (by patient: train, test and validation each get at least one)."""
    from core.label_schema import COVID19_SCHEMA
    from core.models import Campaign, Institution
    from demo.phantom import load_ground_truth
    from imaging.ingest.service import ingest_path
    from modelassist.services.export import export_request, export_run

    media = root / slug
    media.mkdir(parents=True)
    media.chmod(0o700)
    settings.MEDIA_ROOT = media
    if cast is not None:
        institution, campaign, manager = cast.institution, cast.campaign, cast.manager
        people = SimpleNamespace(campaign=campaign, manager=manager, annotator=cast.annotator)
    else:
        institution = Institution.objects.create(slug=slug, name=f"{slug.title()} Hospital")
        campaign = Campaign.objects.create(
            slug=f"covid-{slug}",
            name=f"COVID-19 at {slug}",
            institution=institution,
            label_schema=COVID19_SCHEMA,
        )
        found = _people(slug, institution, campaign)
        manager = found["manager"]
        people = SimpleNamespace(campaign=campaign, manager=manager, annotator=found["annotator"])
    folder = sources / slug
    truths = {}
    for i in range(scans):
        series = make_series(folder, slices=8, size=32, seed=seed + i, patient=f"{slug}-{i}")
        truths[f"{slug}-{i}"] = load_ground_truth(truth_of(series)).lesions
    report = ingest_path(folder, institution=institution, campaign_id=campaign.pk)
    assert not report.rejected_files and not report.rejected_series, report.as_dict()
    from core.models import Scan

    rows = Scan.objects.filter(pk__in=report.scans_created).select_related("study__patient").order_by("pk")
    approve(
        people,
        [(s, label_volume(truths[s.study.patient.original_patient_id], s.shape)) for s in rows],
        scan_labels={s.pk: {"diagnosis": DIAGNOSES[i % 2]} for i, s in enumerate(rows)},
    )
    export = export_run(export_request(actor=manager, campaign=campaign, enqueue=False).pk)
    assert export.status == "done", export.error
    return Site(
        slug=slug, institution=institution, campaign=campaign, manager=manager, export=export, media=media
    )


class Jobs:
    """The coordinator's and the sites' jobs, each in a thread of the test process as a `train`
    worker would run them; joined (and their database connections closed) however the test ends."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self, fn, *args, **kwargs) -> None:
        def body() -> None:
            from django.db import connection

            try:
                fn(*args, **kwargs)
            except BaseException as exc:  # reported by the test
                self.errors.append(exc)
            finally:
                connection.close()

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self, timeout: float, run=None) -> None:
        """Wait for every job; past `timeout`, fail the run so every job stops its processes
        and ends (the test then fails on the run's status, with nothing left running)."""
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if run is not None and any(t.is_alive() for t in self.threads):
            from core.jobs.services import job_fail

            job_fail(run, f"the test stopped it: the jobs took longer than {timeout:.0f} s")
            for thread in self.threads:
                thread.join(60)


@contextlib.contextmanager
def no_flower_left(root: Path):
    """Every Flower process started under `root` (its FLWR_HOME) is gone when the test ends:
    the services stop them. Any left are killed here, so none outlives a failing test."""
    import psutil

    def flower() -> list:
        found = []
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error):
                if proc.environ().get("FLWR_HOME", "").startswith(str(root)):
                    found.append(proc)
        return found

    try:
        yield
    finally:
        left = flower()
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
    assert not left, f"Flower processes left running: {[p.pid for p in left]}"

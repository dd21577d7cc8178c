"""The Django side of bench/load.py, run as its own process with the production settings:

    _load_django.py seed WORK     cast, phantoms imported by manage.py import_dicom, batches
                                  assigned (pre-segmentation runs on the Celery workers); writes
                                  WORK/plan.json for the Locust driver
    _load_django.py verify WORK   checks every 2xx save of WORK/saves.jsonl against the database;
                                  writes WORK/verify.json

Never imported by the driver: Locust monkey-patches the standard library with gevent, Django
stays out of that process.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# 40 scans' baseline pre-segmentation on two worker processes: ~2 minutes on a quiet machine, and
# more than the former 15-minute limit at load average 20 (it failed there, 2026-12-02). Seeding
# happens once (bench/_load_seedcache.py keeps it), so the wait is long.
# Scans of an earlier batch, curated and approved before the run: the data manager exports it.
CURATED = 2
PRESEG_WAIT_S = int(os.environ.get("CURATECT_LOAD_PRESEG_WAIT_S", "3600"))


def _setup() -> None:
    import django

    django.setup()


def seed(work: Path) -> None:
    """The reading room: 20 annotators, 8 checkers, 2 seniors and a data manager of one campaign."""
    _setup()
    from django.core.management import call_command

    from core.label_schema import COVID19_SCHEMA
    from core.models import Campaign, CampaignMember, Institution, Membership, Role, User

    counts = json.loads(os.environ["CURATECT_LOAD_CAST"])
    per_annotator = int(os.environ["CURATECT_LOAD_SCANS_PER_ANNOTATOR"])
    slices = int(os.environ["CURATECT_LOAD_SLICES"])
    inst = Institution.objects.create(slug="load", name="Load Hospital")
    campaign = Campaign.objects.create(
        slug="load", name="Load", institution=inst, label_schema=COVID19_SCHEMA
    )
    people: dict[str, list[dict]] = {}
    roles = {
        "annotator": Role.ANNOTATOR,
        "checker": Role.CHECKER,
        "senior": Role.SENIOR,
        "manager": Role.DATA_MANAGER,
    }
    for group, role in roles.items():
        for n in range(1, counts[group] + 1):
            name, password = f"{group}{n:02d}", secrets.token_urlsafe(12)
            user = User.objects.create_user(username=name, password=password)
            Membership.objects.create(user=user, institution=inst, role=role)
            CampaignMember.objects.create(campaign=campaign, user=user, role=role)
            people.setdefault(group, []).append({"username": name, "password": password, "id": user.pk})

    t0 = time.perf_counter()
    in_work = counts["annotator"] * per_annotator
    seeds, truth = _write_phantoms(work / "dicom", in_work + CURATED, slices)
    written_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    # The server-folder import (what a data manager runs for a folder on the server): pseudonymise,
    # check, group, store, build the volume caches.
    call_command("import_dicom", str(work / "dicom"), institution="load", campaign="load", verbosity=0)
    import_s = time.perf_counter() - t0
    shutil.rmtree(work / "dicom")
    curated, curated_scans = _curate_earlier_batch(campaign, people, truth, range(in_work, in_work + CURATED))
    batches = _assign_batches(campaign, people, per_annotator)
    t0 = time.perf_counter()
    _wait_for_presegmentation(batches)
    preseg_s = time.perf_counter() - t0
    plan = {
        "campaign_id": campaign.pk,
        "people": people,
        "batches": batches,
        "curated_batch": curated,
        "curated_scan_ids": curated_scans,
        "lesion_seeds": seeds,
        "seed_s": {
            "phantoms": round(written_s, 1),
            "import": round(import_s, 1),
            "preseg": round(preseg_s, 1),
        },
    }
    (work / "plan.json").write_text(json.dumps(plan))


def _write_phantoms(out: Path, n: int, slices: int) -> tuple[list[list[int]], np.ndarray]:
    """n series of one 512×512 phantom as n patients; returns voxels (z, y, x) inside its lesions
    and its lesion labels.

    One anatomy for all: drawing a phantom costs seconds, writing one is cheap, and the server
    does the same work per scan either way (its caches are per file, not per pixel content).
    """
    from demo.phantom import make_phantom, write_ct_series

    phantom = make_phantom(slices, 512, 512, seed=16)
    for i in range(n):
        write_ct_series(
            phantom.hu,
            out / f"P{i:03d}",
            spacing=phantom.spacing,
            origin=phantom.origin,
            patient_id=f"LOAD-{i:03d}",
            patient_name=f"LOAD^{i:03d}",
            series_description=f"Load phantom {i:03d}",
        )
    lesion = np.argwhere(phantom.lesions > 0)
    rng = np.random.default_rng(16)
    seeds = [
        [int(v) for v in lesion[j]] for j in rng.choice(len(lesion), min(200, len(lesion)), replace=False)
    ]
    return seeds, phantom.lesions


def _curate_earlier_batch(
    campaign, people: dict[str, list[dict]], truth: np.ndarray, numbers: range
) -> tuple[int, list[int]]:
    """Last week's batch, approved through the real QC services (the annotator saves and submits,
    the two checkers the submit drew pass, the senior passes the spot check): what the data
    manager exports during the run. Returns its id and its scans' ids."""
    from core.models import Scan, User
    from demo.curation import curate_batches

    scans = [
        Scan.objects.get(
            study__institution=campaign.institution, study__patient__original_patient_id=f"LOAD-{i:03d}"
        )
        for i in numbers
    ]
    (batch,) = curate_batches(
        campaign,
        manager=User.objects.get(pk=people["manager"][0]["id"]),
        annotator=User.objects.get(pk=people["annotator"][0]["id"]),
        labelled=[(scan, truth, "COVID-19") for scan in scans],
        annotate_s=600,
    )
    return batch.pk, [s.pk for s in scans]


def _assign_batches(campaign, people: dict[str, list[dict]], per_annotator: int) -> list[dict]:
    from core.models import User
    from core.services.batches import batch_build

    manager = User.objects.get(pk=people["manager"][0]["id"])
    batches = []
    for person in people["annotator"]:
        annotator = User.objects.get(pk=person["id"])
        batch = batch_build(actor=manager, campaign=campaign, size=per_annotator, annotator=annotator)
        scan_ids = list(batch.items.order_by("position").values_list("scan_id", flat=True))
        if len(scan_ids) != per_annotator:
            raise SystemExit(
                f"error: batch of {person['username']} has {len(scan_ids)} scans, not {per_annotator}"
            )
        batches.append({"id": batch.pk, "annotator": person["username"], "scan_ids": scan_ids})
    return batches


def _wait_for_presegmentation(batches: list[dict]) -> None:
    """The reading room opens on pre-segmented batches, as it would the morning after assignment."""
    from modelassist.models import PRESEG_FINAL, PresegScan

    batch_ids = [b["id"] for b in batches]
    expected = sum(len(b["scan_ids"]) for b in batches)
    deadline = time.monotonic() + PRESEG_WAIT_S
    while time.monotonic() < deadline:
        rows = PresegScan.objects.filter(run__batch_id__in=batch_ids)
        finished = rows.filter(status__in=PRESEG_FINAL).count()
        if rows.count() >= expected and finished == rows.count():
            failed = rows.exclude(status="done").values_list("status", "error")[:3]
            if failed:
                raise SystemExit(f"error: pre-segmentation did not finish cleanly: {list(failed)}")
            return
        time.sleep(2)
    finished = PresegScan.objects.filter(run__batch_id__in=batch_ids, status__in=PRESEG_FINAL).count()
    raise SystemExit(
        f"error: pre-segmentation of {expected} scans not done within {PRESEG_WAIT_S} s "
        f"({finished} finished; CURATECT_LOAD_PRESEG_WAIT_S waits longer)"
    )


def verify(work: Path) -> None:
    """Every 2xx save is a stored revision of its scan, by its annotator, on the parent it named,
    holding the bytes it sent in its box and its parent's labels everywhere else."""
    _setup()
    from annotation.models import Revision, RevisionSource
    from annotation.storage import load_labels

    plan = json.loads((work / "plan.json").read_text())
    saves = [json.loads(line) for line in (work / "saves.jsonl").read_text().splitlines() if line.strip()]
    annotator_ids = [p["id"] for p in plan["people"]["annotator"]]
    # The run's saves only: the earlier batch's revisions were made by the seed.
    stored = Revision.objects.filter(source=RevisionSource.HUMAN, author_id__in=annotator_ids).exclude(
        annotation__scan_id__in=plan.get("curated_scan_ids", [])
    )
    problems: list[str] = []
    by_id = {r.pk: r for r in stored.select_related("annotation__scan")}
    saves.sort(key=lambda s: (s["scan_id"], s["revision_id"]))
    previous: tuple[int, np.ndarray] | None = None
    for save in saves:
        problem = _check_save(save, by_id, load_labels, previous)
        if isinstance(problem, str):
            problems.append(problem)
            previous = None
        else:
            previous = problem
    out = {
        "revisions_expected": len(saves),
        "revisions_stored": len(by_id),
        "lost": len(problems),
        "problems": problems[:20],
    }
    (work / "verify.json").write_text(json.dumps(out))


def _check_save(save: dict, by_id: dict, load_labels, previous):
    """None-free: the revision's label volume when the save is intact, else why it is not."""
    rev = by_id.get(save["revision_id"])
    tag = f"save of scan {save['scan_id']} as revision {save['revision_id']}"
    if rev is None:
        return f"{tag}: no such revision stored"
    scan = rev.annotation.scan
    if scan.pk != save["scan_id"] or rev.author_id != save["user_id"] or rev.parent_id != save["parent_id"]:
        return f"{tag}: stored for scan {scan.pk}, author {rev.author_id}, parent {rev.parent_id}"
    shape = tuple(scan.shape)
    labels = load_labels(rev.label_sha256, shape)
    (oz, oy, ox), (d, h, w) = save["offset"], save["shape"]
    box = (slice(oz, oz + d), slice(oy, oy + h), slice(ox, ox + w))
    if hashlib.sha256(np.ascontiguousarray(labels[box]).tobytes()).hexdigest() != save["box_sha256"]:
        return f"{tag}: the box holds other bytes than were sent"
    if previous is not None and previous[0] == rev.parent_id:
        parent = previous[1]
    else:
        parent = load_labels(rev.parent.label_sha256, shape) if rev.parent_id else np.zeros(shape, np.uint8)
    changed = labels != parent
    changed[box] = False
    if changed.any():
        return f"{tag}: {int(changed.sum())} voxels outside the box differ from its parent"
    return (rev.pk, labels)


if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2])
    {"seed": seed, "verify": verify}[command](folder)

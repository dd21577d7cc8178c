"""Dataset export throughput: 50 curated phantom scans (one approved batch) exported as NIfTI,
DICOM SEG, dataset.json and manifest through the service the API's task runs.

Prints JSON with scans_per_s (the export alone: volumes and labels read, NIfTI and SEG written,
checksums, atomic publish). Setup (phantoms, import, scripted QC) is not timed.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import _django

SCANS, SLICES, SIZE = 50, 64, 256
HOSPITALS = 10  # institutions, so every split of the institution-level split is used


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def people(campaign, inst):
    """Two checkers and a senior besides bench/_django's annotator and manager."""
    from core.models import CampaignMember, Membership, Role, User

    out = {}
    for name, role in [("checker1", Role.CHECKER), ("checker2", Role.CHECKER), ("senior", Role.SENIOR)]:
        user = User.objects.create_user(username=name, password="x")
        Membership.objects.create(user=user, institution=inst, role=role)
        CampaignMember.objects.create(campaign=campaign, user=user, role=role)
        out[name] = user
    return out


def import_phantoms(work: Path, campaign, n: int, *, slices: int, size: int, hospitals: int):
    """n phantom series from `hospitals` institutions, imported: [(scan, truth lesions)]."""
    from core.models import Institution, Scan
    from imaging.ingest.service import ingest_path

    cases = []
    for h in range(hospitals):
        inst = Institution.objects.create(slug=f"hospital-{h:02d}", name=f"Hospital {h}")
        campaign.shared_with.add(inst)
        folder = work / f"hospital-{h:02d}"
        truths = {}
        for i in range(h, n, hospitals):
            out = folder / f"s{i:03d}"
            _, truth = _django.phantom_series(
                out,
                slices=slices,
                rows=size,
                cols=size,
                seed=i,
                patient_id=f"H{h}-{i:03d}",
                patient_name=f"BENCH^{i}",
            )
            (out.parent / f"{out.name}-truth.npz").unlink()  # only DICOM in the folder we import
            truths[f"H{h}-{i:03d}"] = truth.lesions
        report = ingest_path(folder, institution=inst, campaign_id=campaign.pk)
        assert not report.rejected_series and not report.rejected_files, report.as_dict()
        scans = Scan.objects.filter(pk__in=report.scans_created).select_related("study__patient")
        # The re-identification table links each scan back to its phantom's truth.
        cases += [(scan, truths[scan.study.patient.original_patient_id]) for scan in scans.order_by("pk")]
    return cases


def approve_all(campaign, manager, annotator, cases) -> None:
    """Batches through the real services: saved, submitted, checked, spot-checked, approved."""
    from demo.curation import curate_batches

    labelled = [(scan, lesions, "COVID-19") for scan, lesions in cases]
    curate_batches(campaign, manager=manager, annotator=annotator, labelled=labelled)


def approved_campaign(work: Path, n: int, *, slices: int, size: int, hospitals: int):
    inst, campaign, cast = _django.cast()
    people(campaign, inst)
    t0 = time.perf_counter()
    cases = import_phantoms(work, campaign, n, slices=slices, size=size, hospitals=hospitals)
    log(f"{n} phantoms of {slices}×{size}² made and imported in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    approve_all(campaign, cast["manager"], cast["annotator"], cases)
    log(f"annotated, checked and approved in {time.perf_counter() - t0:.1f} s")
    return campaign, cast, cases


def main() -> None:
    work = _django.setup()
    from modelassist.services.export import export_request, export_run

    campaign, cast, _ = approved_campaign(work, SCANS, slices=SLICES, size=SIZE, hospitals=HOSPITALS)
    export = export_request(actor=cast["manager"], campaign=campaign, enqueue=False)
    t0 = time.perf_counter()
    export = export_run(export.pk)
    seconds = time.perf_counter() - t0
    assert export.status == "done", export.error
    log(
        f"export v{export.version}: {export.summary['cases']} cases {export.summary['splits']}, "
        f"{export.summary['bytes'] / 1e6:.0f} MB in {seconds:.1f} s"
    )
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"scans_per_s": round(export.summary["cases"] / seconds, 2)}))


if __name__ == "__main__":
    main()

"""Figures over stages (#14 §4): curated data arrives in stages of 16, 32, 64 and 128 phantom
scans from four institutions, each with its own scanner style; every stage goes through the
real services — annotated, checked by two checkers, spot-checked and approved (as seed_demo
does) → exported → retrained (the `train` queue's service) — and the stage's model version is
evaluated on a fixed held-out institution (a fifth scanner style, never curated, the same scans
for every stage), as is the classical baseline.

Prints JSON: stages (one {scans, seg_dice, auc_micro, sens_covid, spec_covid} per stage),
baseline_dice, and held_out (the held-out cohort's size and diagnoses). seg_dice is the mean of
the per-class lesion Dice (ground glass, consolidation) pooled over the held-out scans, as the
training service scores a test split; sens_covid/spec_covid are COVID-19 vs the rest at the
classifier's argmax.

To fit about 20 minutes on 2 quiet CPU cores the phantoms are small (SLICES × SIZE², not the
256²–512² of the other benches), segmented at their own 128² grid (unet2d-small-128), and every
stage trains the same fixed number of epochs (STAGE_PARAMS: no early stop, no time cut that would
make one stage's model less trained than another's; max_minutes is only a safety cap that a quiet
machine never reaches). `training` in the JSON says how many epochs each stage ran. Phantom
figures test the pipeline, not clinical accuracy.

bench/interaction.py imports the helpers below (cohort cases, import, curation).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import _django

# CURATECT_BENCH_STAGES (e.g. "16,32,64") runs a shortened curve on a crowded machine; the
# README says which stages a figure comes from.
STAGES = tuple(int(n) for n in os.environ.get("CURATECT_BENCH_STAGES", "16,32,64,128").split(","))
INSTITUTIONS = 4
HELD_OUT = 12  # scans of the fixed held-out institution
SLICES, SIZE = 24, 128
ARCHITECTURE = "unet2d-small-128"
# The same for every stage, so the stages differ only in their data: a larger stage sees more
# samples per epoch, never fewer epochs. patience = epochs: every epoch runs (the best validation
# epoch is kept). 12 epochs of 48 crops of 64² per case (70 % around a lesion; at the 128 grid
# what the default's 128² crops of 256² are): ~3,200 optimiser steps at 128 scans, a few minutes
# on 2 quiet cores. The cap only stops a run that a crowded machine would otherwise drag on for
# hours (then `training` shows fewer epochs).
EPOCHS = 12
CLASSIFIER_EPOCHS = 50
STAGE_PARAMS = {
    "epochs": EPOCHS,
    "slices_per_case": 48,
    "crop": 64,
    "patience": EPOCHS,
    "max_minutes": 30.0,
    # The classifier's own budget (the training service's default: 50 epochs, the last kept);
    # without it the classifier would follow the segmenter's 12 epochs, far too few for it.
    "classifier_epochs": CLASSIFIER_EPOCHS,
    "classifier_patience": CLASSIFIER_EPOCHS,
    "classifier_max_minutes": 30.0,
}


COVID = "COVID-19"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- phantom cases


@dataclass
class Case:
    """One phantom scan: its volume and truth, the diagnosis a curator gives it, its patient."""

    phantom: object  # demo.phantom.Phantom
    diagnosis: str
    patient_id: str


def phantom_cases(
    n: int, *, institution: int, seed: int = 0, slices: int = SLICES, size: int = SIZE
) -> list[Case]:
    """n cases of one institution: the phantom cohorts (three patterns, scanner styles) when
    demo.phantoms.cohorts is there; else the single-pattern generator, every third scan healthy."""
    try:
        from demo.phantoms.cohorts import cohort
    except ImportError:
        return _plain_cases(n, institution=institution, seed=seed, slices=slices, size=size)
    return [
        Case(c.phantom, c.diagnosis, f"I{institution}-{c.patient_id}")
        for c in cohort(n, institution=institution, seed=seed, slices=slices, rows=size, cols=size)
    ]


def _plain_cases(n: int, *, institution: int, seed: int, slices: int, size: int) -> list[Case]:
    from demo.phantom import make_phantom

    out = []
    for i in range(n):
        healthy = i % 3 == 2
        s = 100_000 * (institution + 1) + 1000 * seed + i
        phantom = make_phantom(slices, size, size, seed=s, lesions=0 if healthy else None)
        diagnosis = "no imaging signs of infection" if healthy else COVID
        out.append(Case(phantom, diagnosis, f"I{institution}-S{seed}-{i:04d}"))
    return out


def import_cases(
    work: Path, institution, campaign, cases: list[Case], *, also: tuple = ()
) -> list[tuple[object, Case]]:
    """Write the cases as DICOM series and import them into `campaign` (and the same series into
    each campaign of `also`: a stored series imported again is only linked): [(scan, case)],
    linked back to the cases through the re-identification table."""
    from core.models import Scan
    from demo.phantom import write_ct_series
    from imaging.ingest.service import ingest_path

    folder = work / "series" / f"{institution.slug}-{int(time.monotonic() * 1e6)}"
    by_patient = {}
    for case in cases:
        p = case.phantom
        write_ct_series(
            p.hu,
            folder / case.patient_id,
            spacing=p.spacing,
            origin=p.origin,
            patient_id=case.patient_id,
            patient_name=f"BENCH^{case.patient_id}",
            institution_name=institution.name,
        )
        by_patient[case.patient_id] = case
    report = ingest_path(folder, institution=institution, campaign_id=campaign.pk)
    assert not report.rejected_series and not report.rejected_files, report.as_dict()
    for other in also:
        ingest_path(folder, institution=institution, campaign_id=other.pk)
    shutil.rmtree(folder, ignore_errors=True)
    scans = Scan.objects.filter(pk__in=report.scans_created).select_related("study__patient").order_by("pk")
    return [(scan, by_patient[scan.study.patient.original_patient_id]) for scan in scans]


def curate(campaign, people: dict, items: list[tuple[object, Case]]) -> None:
    """Batches of the campaign's size through the real services, as seed_demo curates: the
    annotator saves the truth with its diagnosis and submits, both checkers pass, the senior
    passes the spot checks, and the batch is approved."""
    from demo.curation import curate_batches

    curate_batches(
        campaign,
        manager=people["manager"],
        annotator=people["annotator"],
        labelled=[(scan, case.phantom.lesions, case.diagnosis) for scan, case in items],
    )


def bench_people(campaign, inst) -> dict:
    """bench/_django's annotator and manager, and two checkers and a senior."""
    from export import people

    from core.models import User

    out = {name: User.objects.get(username=name) for name in ("annotator", "manager")}
    out.update(people(campaign, inst))
    return out


def retrain(campaign, manager, *, architecture: str = ARCHITECTURE, params: dict | None = None):
    """Export the curated labels and train on them, through the services the queues run."""
    from modelassist.services.export import export_request, export_run
    from modelassist.services.training import training_request, training_run_execute

    export = export_run(export_request(actor=manager, campaign=campaign, enqueue=False).pk)
    assert export.status == "done", export.error
    run = training_request(
        actor=manager, campaign=campaign, export=export, architecture=architecture, params=params
    )
    t0 = time.perf_counter()
    last = [0.0]

    def progress(fraction: float, message: str) -> None:
        if time.perf_counter() - last[0] > 20:  # a line every 20 s is enough to follow it
            last[0] = time.perf_counter()
            log(f"  {fraction:4.0%} {message}")

    run = training_run_execute(run.pk, progress)
    assert run.status == "done", run.error
    log(
        f"  export v{export.version} {export.summary['splits']}; trained in {time.perf_counter() - t0:.0f} s "
        f"({run.metrics['epochs_run']} epochs of {run.params['epochs']}, "
        f"{int(run.params['slices_per_case'])} slices per case): {run.decision}"
    )
    return run


# ----------------------------------------------------------------------------- held-out figures


def held_out_figures(version, cases: list[Case]) -> dict:
    """The version's segmenter and classifier on the held-out cases (as the service tests a split)."""
    from annotation.dice import pooled_case_dice
    from modelassist.lazy import network
    from modelassist.services import model_versions

    model = model_versions.load_version_model(version)
    dice = pooled_case_dice([(network.predict_volume(model, c.phantom.hu), c.phantom.lesions) for c in cases])
    out = {"seg_dice": round(dice["mean"], 4), "auc_micro": None, "sens_covid": None, "spec_covid": None}
    classifier = model_versions.load_version_classifier(version)
    if classifier is None:
        return out
    figures = classifier_figures_on(classifier, cases)
    out["auc_micro"] = _round(figures["auc_micro"])
    out["sens_covid"] = _round(figures["vs_rest"]["sensitivity"])
    out["spec_covid"] = _round(figures["vs_rest"]["specificity"])
    return out


def classifier_figures_on(classifier, cases: list[Case]) -> dict:
    """A scan classifier's figures on the phantom cases whose diagnosis it knows (as the service tests a split)."""
    from modelassist.classifier import data
    from modelassist.services import evaluation

    classes = list(classifier.classes)
    test = [(c.phantom.hu, c.phantom.lesions, tuple(c.phantom.spacing)) for c in cases]
    labelled = [
        (t, classes.index(c.diagnosis)) for t, c in zip(test, cases, strict=True) if c.diagnosis in classes
    ]
    chosen = [t for t, _ in labelled]
    return evaluation.classifier_test_figures(
        classifier, chosen, data.lung_masks(chosen), [k for _, k in labelled]
    )


def baseline_dice(cases: list[Case]) -> float:
    from annotation.dice import pooled_case_dice
    from modelassist.baseline import baseline_presegment

    pairs = [(baseline_presegment(c.phantom.hu, c.phantom.spacing)[0], c.phantom.lesions) for c in cases]
    return round(pooled_case_dice(pairs)["mean"], 4)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


# ----------------------------------------------------------------------------- the bench


def main() -> None:
    started = time.perf_counter()
    work = _django.setup()
    from core.models import Institution
    from modelassist.models import SplitPlan

    inst, campaign, _ = _django.cast()
    people = bench_people(campaign, inst)
    # A fixed split seed: the same institutions train, validate and test in every run.
    SplitPlan.objects.create(campaign=campaign, seed=14)
    hospitals = []
    for k in range(INSTITUTIONS):
        hospital = Institution.objects.create(slug=f"hospital-{k}", name=f"Hospital {k}")
        campaign.shared_with.add(hospital)
        hospitals.append(hospital)
    held_out = phantom_cases(HELD_OUT, institution=INSTITUTIONS, seed=99)
    base = baseline_dice(held_out)
    log(f"held-out institution: {HELD_OUT} scans; baseline lesion Dice {base:.3f}")

    stages, training, curated = [], [], 0
    for scans in STAGES:
        t0 = time.perf_counter()
        per_hospital = (scans - curated) // INSTITUTIONS
        for k, hospital in enumerate(hospitals):
            # Each stage brings new scans of every hospital (seed = the stage), as data comes in.
            cases = phantom_cases(per_hospital, institution=k, seed=scans)
            curate(campaign, people, import_cases(work, hospital, campaign, cases))
        log(f"stage {scans}: {scans - curated} new scans curated in {time.perf_counter() - t0:.0f} s")
        curated = scans
        t1 = time.perf_counter()
        run = retrain(campaign, people["manager"], architecture=ARCHITECTURE, params=STAGE_PARAMS)
        minutes = round((time.perf_counter() - t1) / 60, 1)
        figures = held_out_figures(run.model_version, held_out)
        stages.append({"scans": scans, **figures})
        training.append({"scans": scans, "epochs_run": run.metrics["epochs_run"], "minutes": minutes})
        log(f"stage {scans}: {figures} ({time.perf_counter() - started:.0f} s so far)")

    shutil.rmtree(work, ignore_errors=True)
    log(f"total {time.perf_counter() - started:.0f} s")
    print(
        json.dumps(
            {
                "stages": stages,
                "baseline_dice": base,
                "training": {
                    "architecture": ARCHITECTURE,
                    "epochs": EPOCHS,
                    "classifier_epochs": CLASSIFIER_EPOCHS,
                    "stages": training,
                },
                "held_out": {
                    "scans": HELD_OUT,
                    "diagnoses": {
                        d: sum(c.diagnosis == d for c in held_out)
                        for d in sorted({c.diagnosis for c in held_out})
                    },
                },
            }
        )
    )


if __name__ == "__main__":
    main()

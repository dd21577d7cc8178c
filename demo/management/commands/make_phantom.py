"""manage.py make_phantom OUT_DIR --scans N --slices S [--rows R --cols C --seed K --patients P]

With --institution I, the scans are a phantom cohort of institution I instead (the three
scan-level patterns, its scanner style; demo.phantoms.cohorts), one patient each."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from demo.phantom import load_ground_truth, save_ground_truth, write_ct_series, write_phantom_study
from demo.phantoms.cohorts import cohort

# Made-up names, so demo data and pseudonymisation tests have something name-like to remove.
NAMES = ["DOE^JANE", "ROE^RICHARD", "SMITH^ALEX", "MILLER^SAM", "GARCIA^MARIA", "CHEN^WEI", "OKAFOR^NGOZI"]
FIRST_STUDY = dt.date(2020, 3, 15)


def _name(patient: int) -> str:
    """DOE^JANE, …, then DOE^JANE2, … once the list runs out; names stay unique per patient."""
    lap = patient // len(NAMES)
    return NAMES[patient % len(NAMES)] + (str(lap + 1) if lap else "")


class Command(BaseCommand):
    help = (
        "Write synthetic chest CT studies (one DICOM series each, with ground_truth.npz). With "
        "--patients P the scans are spread over P patients, whose later scans are follow-ups a week apart."
    )

    def add_arguments(self, parser):
        parser.add_argument("out_dir", type=Path)
        parser.add_argument("--scans", type=int, default=1)
        parser.add_argument("--slices", type=int, default=64)
        parser.add_argument("--rows", type=int, default=256)
        parser.add_argument("--cols", type=int, default=256)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--patients", type=int, help="default: one patient per scan")
        parser.add_argument("--lesions", type=int, help="lesions per scan (default: 4–7, both classes)")
        parser.add_argument(
            "--extra-phi", action="store_true", help="identifying data in nested and private tags"
        )
        parser.add_argument(
            "--ascending", action="store_true", help="name files in slice order, not shuffled"
        )
        parser.add_argument(
            "--institution",
            type=int,
            help="write a cohort of this institution (0-3: four scanner styles): COVID-19, other "
            "infection and no-infection patterns, mild to severe",
        )

    def handle(self, *args, out_dir: Path, scans: int, patients: int | None, **opts):
        patients = patients or scans
        if scans < 1 or patients < 1 or min(opts["slices"], opts["rows"], opts["cols"]) < 8:
            raise CommandError("--scans and --patients must be at least 1, sizes at least 8")
        seed = opts["seed"]
        if opts["institution"] is not None:
            self._cohort(out_dir, scans, opts["institution"], seed, opts)
            return
        for i in range(scans):
            patient, visit = i % patients, i // patients
            folder = write_phantom_study(
                out_dir,
                slices=opts["slices"],
                rows=opts["rows"],
                cols=opts["cols"],
                seed=seed + i,
                anatomy_seed=seed * 1000 + patient,  # a patient's follow-ups share the body
                lesions=opts["lesions"],
                patient_id=f"PHANTOM{seed:03d}{patient + 1:04d}",
                patient_name=_name(patient),
                study_date=(FIRST_STUDY + dt.timedelta(days=7 * visit + patient)).strftime("%Y%m%d"),
                accession=f"ACC{seed:03d}{i + 1:05d}",
                extra_phi=opts["extra_phi"],
                slice_order="ascending" if opts["ascending"] else "shuffled",
            )
            counts = np.bincount(load_ground_truth(folder).lesions.ravel(), minlength=3)
            self.stdout.write(f"{folder}  ground-glass={counts[1]} consolidation={counts[2]} voxels")

    def _cohort(self, out_dir: Path, scans: int, institution: int, seed: int, opts: dict) -> None:
        if institution < 0:
            raise CommandError("--institution is 0 or more")
        size = {"slices": opts["slices"], "rows": opts["rows"], "cols": opts["cols"]}
        try:
            cases = cohort(scans, institution=institution, seed=seed, **size)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for i, case in enumerate(cases):
            folder = Path(out_dir) / f"{case.patient_id}_{case.pattern}_{case.severity}"
            p = case.phantom
            write_ct_series(
                p.hu,
                folder,
                spacing=p.spacing,
                origin=p.origin,
                patient_id=case.patient_id,
                patient_name=_name(i),
                accession=f"ACC{seed:03d}{i + 1:05d}",
                extra_phi=opts["extra_phi"],
                slice_order="ascending" if opts["ascending"] else "shuffled",
                scanner=case.style,
            )
            save_ground_truth(p, folder)
            counts = np.bincount(p.lesions.ravel(), minlength=3)
            self.stdout.write(
                f"{folder}  {case.diagnosis} ({case.severity}), {case.style.name}: "
                f"ground-glass={counts[1]} consolidation={counts[2]} voxels"
            )

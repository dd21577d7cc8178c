"""Retraining on a CPU: 40 phantom scans of 10 hospitals, curated through the real QC services,
exported, then one training run of the small CPU configuration (unet2d-small, the service's
default crops and sampling, 15 epochs) through the service the `train` queue runs.

Prints JSON with epoch_s (mean seconds per epoch: training plus the validation pass),
test_dice (the new model's mean lesion Dice on the export's test split) and
baseline_test_dice (the classical baseline on the same test cases). The trained weights are
kept at MODEL_COPY for bench/preseg.py.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import _django
from export import approved_campaign

SCANS, SLICES, SIZE, HOSPITALS = 40, 64, 256, 10
ARCHITECTURE = "unet2d-small"
# The service's defaults (128 crops, 64 per case, batch 16, lr 3e-3) with fewer epochs.
PARAMS = {"epochs": 15, "patience": 6, "max_minutes": 8.0}
MODEL_COPY = Path(tempfile.gettempdir()) / "curatect-bench-unet2d-small.pt"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    work = _django.setup()
    from modelassist.selectors import media_path
    from modelassist.services.export import export_request, export_run
    from modelassist.services.training import training_request, training_run_execute

    campaign, cast, _ = approved_campaign(work, SCANS, slices=SLICES, size=SIZE, hospitals=HOSPITALS)
    export = export_run(export_request(actor=None, campaign=campaign, enqueue=False).pk)
    assert export.status == "done", export.error
    log(f"export v{export.version}: {export.summary['splits']}")

    run = training_request(
        actor=cast["manager"], campaign=campaign, export=export, architecture=ARCHITECTURE, params=PARAMS
    )
    t0 = time.perf_counter()
    run = training_run_execute(run.pk, lambda fraction, message: log(f"{fraction:5.0%} {message}"))
    log(f"run {run.status} in {time.perf_counter() - t0:.0f} s: {run.decision or run.error}")
    assert run.status == "done", run.error

    seconds = [h["seconds"] for h in run.history]
    epoch_s = seconds[-1] / len(seconds)  # "seconds" is cumulative since the start of training
    shutil.copyfile(media_path(run.model_version.file_path), MODEL_COPY)
    log(f"model kept at {MODEL_COPY} for bench/preseg.py")
    shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "epoch_s": round(epoch_s, 2),
                "test_dice": round(run.metrics["candidate"]["mean"], 4),
                "baseline_test_dice": round(run.metrics["incumbent"]["mean"], 4),
            }
        )
    )


if __name__ == "__main__":
    main()

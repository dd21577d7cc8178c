"""Pre-segmentation end to end (load the volume → infer → store revision 0) through the service
the `assist` queue runs, for the classical baseline and the PyTorch model, on a 512×512×300
phantom; then both on the real chest CT of pyradiomics (lung1), written to DICOM and imported.

Prints JSON with baseline_s, torch_s (seconds per scan, end to end), baseline_dice, torch_dice
(mean lesion Dice against the phantom's ground truth), lung1_lung_ml (the lung volume the
baseline finds in lung1) and lung1_tumour_dice (lesion-vs-background Dice of the better of the
two against lung1_label.nrrd). The model is the one bench/train.py keeps, when it is there;
otherwise a small one is trained here first on a few 256² phantoms (minutes on a CPU).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import _django
import numpy as np

SLICES, SIZE = 300, 512
MODEL_FROM_TRAIN_BENCH = Path(tempfile.gettempdir()) / "curatect-bench-unet2d-small.pt"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quick_model(work: Path) -> Path:
    """A quick stand-in when bench/train.py has not left its model: unet2d-small on six 256²
    phantoms (the same field of view as the 512² one), about 150 steps of 16 crops of 128²,
    mostly around lesions, as the training service does by default (network.train_model).
    Training stops after 6 minutes at the latest, as it may on a CPU."""
    import torch

    from demo.phantom import make_phantom
    from modelassist import network

    cases = []
    for seed in range(7):
        p = make_phantom(48, 256, 256, seed=100 + seed)
        cases.append((p.hu, p.lesions))
    t0 = time.perf_counter()
    model, history = network.train_model(
        cases[:6],
        cases[6:],
        epochs=12,
        slices_per_case=32,
        patience=12,
        max_minutes=6,
        architecture="unet2d-small",
        crop=128,
        batch_size=16,
        lr=3e-3,
        device=None if torch.cuda.is_available() else torch.device("cpu"),
    )
    log(
        f"trained a quick model in {time.perf_counter() - t0:.0f} s: "
        f"validation Dice {[round(h['val_dice'], 3) for h in history]}"
    )
    path = work / "quick-model.pt"
    network.save_model(model, path, {"note": "bench/preseg.py quick model"})
    return path


def campaign_with_model(inst, model_file: Path | None, slug: str):
    """A campaign whose active model is `model_file` (None: the baseline)."""
    from core.label_schema import COVID19_SCHEMA
    from core.models import Campaign
    from modelassist.selectors import media_path
    from modelassist.services.model_versions import model_version_activate, model_version_register

    campaign = Campaign.objects.create(slug=slug, name=slug, institution=inst, label_schema=COVID19_SCHEMA)
    if model_file is not None:
        relative = f"models/{slug}/bench.pt"
        media_path(relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_file, media_path(relative))
        version = model_version_register(campaign=campaign, name="bench", file_path=relative)
        model_version_activate(actor=None, version=version)
    return campaign


def presegment(campaign, scan, manager):
    """(seconds, labels) of one scan through the pre-segmentation service."""
    from annotation.services import revision_labels
    from core.models import CampaignScan
    from core.services.batches import batch_build
    from modelassist.services.preseg import preseg_queue_batch, presegment_scan_run

    CampaignScan.objects.get_or_create(campaign=campaign, scan=scan)
    batch = batch_build(actor=manager, campaign=campaign, scan_ids=[scan.pk])
    preseg_queue_batch(batch.pk)
    t0 = time.perf_counter()
    row = presegment_scan_run(campaign.pk, scan.pk, batch.pk)
    seconds = time.perf_counter() - t0
    assert row.status == "done", row.error
    return seconds, revision_labels(row.revision)


def import_series(folder: Path, inst):
    from core.models import Scan
    from imaging.ingest.service import ingest_path

    report = ingest_path(folder, institution=inst)
    assert len(report.scans_created) == 1, report.as_dict()
    return Scan.objects.get(pk=report.scans_created[0])


def main() -> None:
    work = _django.setup()
    import SimpleITK as sitk

    from annotation.dice import mask_dice, mean_per_class_dice
    from core.models import CampaignMember, Role
    from demo.phantom import nrrd_to_dicom_series
    from modelassist import network
    from modelassist.services.quantification import scan_lungs

    inst, base, cast = _django.cast()
    if MODEL_FROM_TRAIN_BENCH.exists():
        model_file = MODEL_FROM_TRAIN_BENCH
        log(f"using the model bench/train.py kept: {model_file}")
    else:
        model_file = quick_model(work)
    learned = campaign_with_model(inst, model_file, "bench-torch")
    CampaignMember.objects.create(campaign=learned, user=cast["manager"], role=Role.DATA_MANAGER)
    log(f"device: {network.pick_device()}")

    t0 = time.perf_counter()
    folder, truth = _django.phantom_series(
        work / "phantom",
        slices=SLICES,
        rows=SIZE,
        cols=SIZE,
        seed=7,
        patient_id="BENCH-PRESEG",
        patient_name="BENCH^PRESEG",
    )
    scan = import_series(folder, inst)
    log(f"phantom {SLICES}×{SIZE}² made and imported in {time.perf_counter() - t0:.0f} s")

    baseline_s, baseline_labels = presegment(base, scan, cast["manager"])
    torch_s, torch_labels = presegment(learned, scan, cast["manager"])
    baseline_dice = mean_per_class_dice(baseline_labels, truth.lesions)
    torch_dice = mean_per_class_dice(torch_labels, truth.lesions)
    log(
        f"phantom: baseline {baseline_s:.1f} s Dice {baseline_dice:.3f}; torch {torch_s:.1f} s Dice {torch_dice:.3f}"
    )

    lung1_folder = work / "lung1"
    nrrd_to_dicom_series(
        _django.lung1_file("lung1_image.nrrd"), lung1_folder, patient_id="LUNG1", patient_name="LUNG^ONE"
    )
    lung1 = import_series(lung1_folder, inst)
    tumour = sitk.GetArrayFromImage(sitk.ReadImage(str(_django.lung1_file("lung1_label.nrrd")))) > 0
    assert tumour.shape == lung1.shape, (tumour.shape, lung1.shape)
    _, lung1_base = presegment(base, lung1, cast["manager"])
    _, lung1_torch = presegment(learned, lung1, cast["manager"])
    lungs, _ = scan_lungs(lung1)  # cached by the baseline's run
    lung_ml = np.count_nonzero(lungs) * float(np.prod(lung1.spacing)) / 1000
    dices = {"baseline": mask_dice(lung1_base > 0, tumour), "torch": mask_dice(lung1_torch > 0, tumour)}
    log(f"lung1: lungs {lung_ml:.0f} ml; tumour Dice {dices}")

    shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "baseline_s": round(baseline_s, 2),
                "torch_s": round(torch_s, 2),
                "baseline_dice": round(baseline_dice, 4),
                "torch_dice": round(torch_dice, 4),
                "lung1_lung_ml": round(lung_ml, 1),
                "lung1_tumour_dice": round(max(dices.values()), 4),
            }
        )
    )


if __name__ == "__main__":
    main()

"""A phantom study on disk: its DICOM series and ground_truth.npz side by side."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from demo.phantoms.dicom import write_ct_series
from demo.phantoms.generator import Phantom, make_phantom
from demo.phantoms.shapes import Vec3

GROUND_TRUTH_FILE = "ground_truth.npz"


@dataclass
class GroundTruth:
    lesions: np.ndarray
    lungs: np.ndarray
    spacing: Vec3
    origin: Vec3


def save_ground_truth(phantom: Phantom, out_dir: Path) -> Path:
    """Write ground_truth.npz next to a series: `lesions` and `lungs` (z, y, x), index 0 = the
    slice with the smallest z position, i.e. the order of the series sorted by ascending
    ImagePositionPatient along the slice normal; `spacing` (x, y, z mm) and `origin` (mm)."""
    path = Path(out_dir) / GROUND_TRUTH_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        lesions=phantom.lesions,
        lungs=phantom.lungs,
        spacing=np.array(phantom.spacing),
        origin=np.array(phantom.origin),
    )
    return path


def load_ground_truth(path: Path) -> GroundTruth:
    """Read a ground_truth.npz (or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / GROUND_TRUTH_FILE
    with np.load(path) as data:
        sx, sy, sz = (float(v) for v in data["spacing"])
        ox, oy, oz = (float(v) for v in data["origin"])
        return GroundTruth(data["lesions"], data["lungs"], (sx, sy, sz), (ox, oy, oz))


def write_phantom_study(
    out_dir: Path,
    *,
    slices: int = 64,
    rows: int = 256,
    cols: int = 256,
    seed: int = 0,
    patient_id: str,
    patient_name: str,
    anatomy_seed: int | None = None,
    lesions: int | None = None,
    study_date: str = "20200315",
    accession: str = "",
    study_uid: str | None = None,
    extra_phi: bool = False,
    slice_order: Literal["shuffled", "ascending"] = "shuffled",
    institution_name: str = "Synthetic General Hospital",
) -> Path:
    """Make a phantom and write it as one series with its ground truth into
    out_dir/<patient_id>_<study_date>_seed<seed>/; returns that folder."""
    phantom = make_phantom(slices, rows, cols, seed, lesions=lesions, anatomy_seed=anatomy_seed)
    folder = Path(out_dir) / re.sub(r"[^A-Za-z0-9_.-]", "_", f"{patient_id}_{study_date}_seed{seed}")
    write_ct_series(
        phantom.hu,
        folder,
        spacing=phantom.spacing,
        origin=phantom.origin,
        patient_id=patient_id,
        patient_name=patient_name,
        study_uid=study_uid,
        study_date=study_date,
        accession=accession,
        institution_name=institution_name,
        extra_phi=extra_phi,
        slice_order=slice_order,
        scanner=phantom.style,
    )
    save_ground_truth(phantom, folder)
    return folder

"""The phantom generator's old import path; the parts live in demo.phantoms.

Demo data, tests and benchmarks import these names from here, so they stay.
"""

from __future__ import annotations

from demo.phantoms.dicom import nrrd_to_dicom_series, write_ct_series
from demo.phantoms.generator import Phantom, make_phantom
from demo.phantoms.study import (
    GROUND_TRUTH_FILE,
    GroundTruth,
    load_ground_truth,
    save_ground_truth,
    write_phantom_study,
)
from demo.phantoms.tissues import CONSOLIDATION, GGO, LEFT_LUNG, RIGHT_LUNG

__all__ = [
    "CONSOLIDATION",
    "GGO",
    "GROUND_TRUTH_FILE",
    "LEFT_LUNG",
    "RIGHT_LUNG",
    "GroundTruth",
    "Phantom",
    "load_ground_truth",
    "make_phantom",
    "nrrd_to_dicom_series",
    "save_ground_truth",
    "write_ct_series",
    "write_phantom_study",
]

"""Tissue labels and their Hounsfield units.

A phantom is built as a small-integer tissue label volume first and turned into HU in one pass
at the end, so the lesion and lung masks are exactly the voxels that carry lesion and lung values.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

# Lesion classes in `Phantom.lesions` (the campaign label schema uses the same numbers).
GGO = 1  # ground-glass opacity: hazy increase in lung density (~ -600 HU)
CONSOLIDATION = 2  # airspace filled, as dense as soft tissue minus a little air (~ -100 HU)
RIGHT_LUNG, LEFT_LUNG = 1, 2

# Tissue labels used while building. Each row: mean HU, noise sigma (HU), lung?, lesion class.
# Noise sigma is the CT noise (~15 HU) combined with the tissue's own texture.
T_PAD, T_AIR, T_TABLE, T_FAT, T_MUSCLE, T_MEDFAT, T_ABDOMEN, T_LUNG = range(8)
T_SOFT, T_BONE, T_MARROW, T_DISC, T_CSF, T_AIRWAY, T_VESSEL, T_VESSEL_EDGE = range(8, 16)
T_GGO, T_CONS = 16, 17
# The disease patterns' own textures (lesions.py). Incidental findings of a scan without
# infection sit in the lung mask but not in the lesion mask: a model must learn they are no lesion.
T_CRAZY, T_BRONCHOGRAM, T_BUD, T_NODULE, T_ATELECTASIS, T_EMPHYSEMA = range(18, 24)
TISSUES: dict[int, tuple[float, float, int, int]] = {
    T_PAD: (-1024, 0, 0, 0),  # outside the reconstruction circle: scanners write a flat minimum
    T_AIR: (-1000, 15, 0, 0),
    T_TABLE: (150, 25, 0, 0),  # carbon-fibre couch: a bright line a threshold must not call body
    T_FAT: (-100, 15, 0, 0),
    T_MUSCLE: (50, 15, 0, 0),
    T_MEDFAT: (-90, 15, 0, 0),  # mediastinal fat, also what fills the cavity until lungs are drawn
    T_ABDOMEN: (55, 15, 0, 0),  # liver and spleen under the diaphragm
    T_LUNG: (-850, 34, 1, 0),  # sqrt(30² parenchyma texture + 15² CT noise)
    T_SOFT: (40, 15, 0, 0),  # heart, great vessels, airway walls, oesophagus
    T_BONE: (700, 45, 0, 0),  # cortical bone
    T_MARROW: (250, 35, 0, 0),  # cancellous bone inside vertebrae, ribs, sternum
    T_DISC: (80, 15, 0, 0),  # intervertebral disc
    T_CSF: (10, 15, 0, 0),  # spinal canal
    T_AIRWAY: (-1000, 15, 0, 0),  # trachea, bronchi, stomach gas
    T_VESSEL: (40, 15, 1, 0),  # intrapulmonary vessels belong to the lung mask
    T_VESSEL_EDGE: (-420, 30, 1, 0),  # partial-volume rim, so vessels are not hard-edged
    T_GGO: (-600, 38, 1, GGO),
    T_CONS: (-100, 25, 1, CONSOLIDATION),
    T_CRAZY: (-330, 40, 1, GGO),  # thickened septa inside ground glass: "crazy paving"
    T_BRONCHOGRAM: (-920, 20, 1, CONSOLIDATION),  # air-filled bronchus inside a consolidation
    T_BUD: (-180, 35, 1, CONSOLIDATION),  # tree-in-bud: small centrilobular nodules, partial volume
    T_NODULE: (30, 20, 1, 0),  # incidental solid nodule
    T_ATELECTASIS: (-40, 25, 1, 0),  # plate-like atelectasis: collapsed, not infected lung
    T_EMPHYSEMA: (-975, 15, 1, 0),  # centrilobular emphysema: lung destroyed to air
}

# Incidental findings in `Phantom.findings` (cohort cases): truth for measuring false positives.
NODULE, ATELECTASIS, EMPHYSEMA = 1, 2, 3
FINDING_LUT = np.zeros(256, dtype=np.uint8)
FINDING_LUT[[T_NODULE, T_ATELECTASIS, T_EMPHYSEMA]] = (NODULE, ATELECTASIS, EMPHYSEMA)

# The CT noise (HU) already folded into each sigma above; a scanner style replaces it with its own.
REFERENCE_NOISE_HU = 15.0


NOISE_BITS = 11  # tissue label (< 32) and noise draw share one uint16 index into HU_TABLE


def _lut(column: int) -> np.ndarray:
    table = np.zeros(256, dtype=np.uint8)
    for label, row in TISSUES.items():
        table[label] = row[column]
    return table


def hu_table(noise_hu: float | None = None, lowest: int = -1024) -> np.ndarray:
    """HU for every (tissue, noise draw) pair: mean + sigma × one of 2048 equally likely standard
    normal quantiles. One table look-up per voxel then gives a noisy HU directly, several times
    faster than drawing float noise and scaling it per tissue (Gaussian up to ±3.3 sigma).

    `noise_hu` swaps the reference CT noise inside each sigma for another (texture kept);
    `lowest` is where values are clipped (a scanner style clips only after its kernel, or air's
    noise, cut short at -1024 before smoothing, would come out brighter than air)."""
    levels = 1 << NOISE_BITS
    quantiles = ndtri((np.arange(levels) + 0.5) / levels)
    table = np.zeros((32, levels), dtype=np.int16)
    for label, (mean, sigma, _, _) in TISSUES.items():
        if noise_hu is not None and sigma > 0:
            texture2 = max(sigma**2 - REFERENCE_NOISE_HU**2, 0.0)
            sigma = float(np.sqrt(texture2 + noise_hu**2))
        table[label] = np.clip(np.rint(mean + sigma * quantiles), lowest, 3071)
    return table.ravel()


HU_TABLE = hu_table()
LUNG_LUT, LESION_LUT = _lut(2), _lut(3)


def one_of(labels: np.ndarray, wanted: set[int]) -> np.ndarray:
    """np.isin for uint8 labels through a 256-entry table: several times faster on small crops."""
    table = np.zeros(256, dtype=bool)
    table[list(wanted)] = True
    return table[labels]

"""From tissue labels to Hounsfield units, as a scanner of some style would show them."""

from __future__ import annotations

import numpy as np

from demo.phantoms.tissues import HU_TABLE, LESION_LUT, LUNG_LUT, NOISE_BITS


def render_plain(label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HU with noise, lesion classes and the lung mask (not yet split by side), slab by slab so
    the temporaries stay small and cache-warm."""
    hu = np.empty(label.shape, dtype=np.int16)
    lesions, lungs = np.empty_like(label), np.empty_like(label)
    step = 8
    for k in range(0, label.shape[0], step):
        lab = label[k : k + step]
        index = lab.astype(np.uint16)
        index <<= NOISE_BITS
        index |= rng.integers(0, 1 << NOISE_BITS, size=lab.shape, dtype=np.uint16)
        hu[k : k + step] = HU_TABLE[index]
        lesions[k : k + step] = LESION_LUT[lab]
        lungs[k : k + step] = LUNG_LUT[lab]
    return hu, lesions, lungs

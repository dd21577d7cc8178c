"""From tissue labels to Hounsfield units, as a scanner of some style would show them.

A style is what makes two hospitals' CTs of the same chest differ: quantum noise, the
reconstruction kernel (soft kernels blur and smooth the noise into blotches, sharp ones enhance
edges and leave fine-grained noise), the slice thickness, a small HU calibration offset and the
field of view. Phantom grids are small (a 128² slice has ~3 mm pixels), where a kernel defined in
mm would vanish inside a pixel, so the kernel here acts on the image grid.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from demo.phantoms.tissues import HU_TABLE, LESION_LUT, LUNG_LUT, NOISE_BITS, T_PAD, hu_table

_SLAB = 8  # slices rendered together: temporaries stay small and cache-warm


@dataclass(frozen=True)
class ScannerStyle:
    """How one institution's scanner and protocol render a chest CT."""

    name: str
    noise_hu: float  # standard deviation of the noise in a uniform region, after the kernel
    kernel_sharpness: float  # 0 soft (smooth, blurred) .. 1 sharp (edge-enhanced)
    slice_thickness_mm: float  # reconstructed thickness, 1-5 mm
    hu_offset: float  # calibration error added to every HU inside the field of view
    fov_mm: float  # reconstruction diameter the protocol asks for

    @property
    def kernel_name(self) -> str:
        """What ConvolutionKernel says: a family word and the sharpness in percent."""
        family = ("SOFT", "STANDARD", "LUNG", "SHARP")[min(int(self.kernel_sharpness * 4), 3)]
        return f"{family}{round(self.kernel_sharpness * 100):02d}"

    def slice_thickness_on(self, step_mm: float) -> float:
        """The thickness a series with this slice step really has: a slice covers at least its
        step (contiguous reconstruction; thinner slices would leave gaps between them)."""
        return round(max(self.slice_thickness_mm, step_mm), 4)


# Four hospitals that bought different scanners and run different protocols.
_STYLES = (
    ScannerStyle("North CT 64 standard", 14.0, 0.45, 2.0, 0.0, 360.0),
    ScannerStyle("East Helix sharp lung", 26.0, 0.92, 1.0, 12.0, 340.0),
    ScannerStyle("South Scan soft thick", 9.0, 0.05, 5.0, -15.0, 420.0),
    ScannerStyle("West low dose", 34.0, 0.7, 3.0, 7.0, 380.0),
)


def scanner_style(index: int) -> ScannerStyle:
    """Institution `index`'s style: 0..3 are four fixed, distinct styles; beyond them a style is
    drawn from the index (deterministic)."""
    if index < 0:
        raise ValueError(f"an institution index is 0 or more, not {index}")
    if index < len(_STYLES):
        return _STYLES[index]
    rng = np.random.default_rng([index, 4242])
    return ScannerStyle(
        f"Site {index} CT",
        round(float(rng.uniform(8, 36)), 1),
        round(float(rng.uniform(0, 1)), 2),
        float(rng.choice([1.0, 1.25, 2.0, 2.5, 3.0, 5.0])),
        round(float(rng.uniform(-15, 15)), 1),
        float(rng.choice([340.0, 360.0, 380.0, 400.0, 420.0])),
    )


def render_plain(label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HU with white reference noise (make_phantom), lesion classes and the lung mask (not yet
    split by side)."""
    hu = np.empty(label.shape, dtype=np.int16)
    lesions, lungs = np.empty_like(label), np.empty_like(label)
    for k in range(0, label.shape[0], _SLAB):
        lab = label[k : k + _SLAB]
        hu[k : k + _SLAB] = HU_TABLE[_noise_index(lab, rng)]
        lesions[k : k + _SLAB] = LESION_LUT[lab]
        lungs[k : k + _SLAB] = LUNG_LUT[lab]
    return hu, lesions, lungs


def _noise_index(lab: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    index = lab.astype(np.uint16)
    index <<= NOISE_BITS
    index |= rng.integers(0, 1 << NOISE_BITS, size=lab.shape, dtype=np.uint16)
    return index


def render_styled(
    label: np.ndarray,
    rng: np.random.Generator,
    style: ScannerStyle,
    step_mm: float,
    offsets: list[tuple[tuple[slice, ...], np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HU as `style` shows them: tissue texture and white noise, the lesions' texture offsets,
    then the kernel in plane and the slice profile along z, the calibration offset last. The
    white noise is scaled so that what is left after the filters has `style.noise_hu`.

    The volume stays int16 between the steps (slabs go through float32 one at a time): a float
    copy of a 200×512×512 volume would cost more time in memory traffic than the filters."""
    sigma_z = _slice_sigma(style, step_mm)
    gain = _filter_gain(style.kernel_sharpness, sigma_z)
    table = hu_table(style.noise_hu / gain, lowest=-4000)
    hu = np.empty(label.shape, dtype=np.int16)
    for k in range(0, label.shape[0], _SLAB):
        hu[k : k + _SLAB] = table[_noise_index(label[k : k + _SLAB], rng)]
    for where, mask, offset in offsets:
        hu[where][mask] += offset
    for k in range(0, label.shape[0], _SLAB):
        slab = _kernel(hu[k : k + _SLAB].astype(np.float32), style.kernel_sharpness)
        if sigma_z == 0:
            slab += style.hu_offset
        hu[k : k + _SLAB] = _to_hu(slab, label[k : k + _SLAB])
    if sigma_z > 0:
        for r in range(0, label.shape[1], 32):  # along z in bands of rows
            band = ndimage.gaussian_filter1d(
                hu[:, r : r + 32].astype(np.float32), sigma_z, axis=0, truncate=3.0
            )
            band += style.hu_offset
            hu[:, r : r + 32] = _to_hu(band, label[:, r : r + 32])
    return hu, LESION_LUT[label], LUNG_LUT[label]


def _to_hu(values: np.ndarray, label: np.ndarray) -> np.ndarray:
    np.rint(values, out=values)
    np.clip(values, -1024, 3071, out=values)
    out = values.astype(np.int16)
    out[label == T_PAD] = -1024  # outside the reconstruction circle stays the flat minimum
    return out


def _kernel(slab: np.ndarray, sharpness: float) -> np.ndarray:
    """In-plane reconstruction kernel: a Gaussian blur that narrows as the kernel sharpens, minus
    a wider box blur (unsharp masking) for the edge enhancement of sharp kernels."""
    blur = 0.35 + 0.85 * (1 - sharpness)
    out = ndimage.gaussian_filter(slab, (0, blur, blur), truncate=3.0)
    boost = 1.2 * max(sharpness - 0.4, 0.0) / 0.6
    if boost > 0:
        wide = ndimage.uniform_filter(slab, (1, 5, 5))  # a box costs the same whatever its size
        out *= 1 + boost
        out -= boost * wide
    return out


def _slice_sigma(style: ScannerStyle, step_mm: float) -> float:
    """Gaussian sigma (in slices) of a slice profile as wide (FWHM) as the slice is thick; none
    when the slice is no thicker than the step the grid already samples."""
    thickness = style.slice_thickness_on(step_mm)
    if thickness <= 1.2 * step_mm:
        return 0.0
    return thickness / 2.355 / step_mm


@functools.lru_cache(maxsize=64)
def _filter_gain(sharpness: float, sigma_z: float) -> float:
    """How much the kernel and slice profile scale white noise's standard deviation (the L2
    norm of their impulse response)."""
    delta = np.zeros((25, 25, 25), dtype=np.float32)
    delta[12, 12, 12] = 1
    out = _kernel(delta, sharpness)
    if sigma_z > 0:
        out = ndimage.gaussian_filter1d(out, sigma_z, axis=0, truncate=3.0)
    return float(np.sqrt((out.astype(np.float64) ** 2).sum()))

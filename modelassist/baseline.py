"""Classical pre-segmentation: lungs by thresholding and morphology, lesions by HU ranges.

This is what pre-segments a campaign's scans before any model has been trained (DESIGN step
3), so it needs no training data and must be fast (a few seconds for 300 × 512 × 512 on two
cores). Pure numpy/scipy: no Django here.

Conventions: arrays are (z, y, x) = (slices, rows, columns); spacing is (x, y, z) mm. Lung
labels: 1 right lung, 2 left lung. In the standard radiological display the patient's right
is on the image's left, so the right lung is the one with the smaller x (column) index.
Lesion labels: 1 ground-glass opacity, 2 consolidation (the baseline never emits 3, "other").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

Spacing = Sequence[float]  # (x, y, z) mm

RIGHT_LUNG, LEFT_LUNG = 1, 2
GGO, CONSOLIDATION = 1, 2

# Body: soft tissue and bone are above -500 HU, air outside the patient is near -1000.
BODY_MIN_HU = -500
# Aerated lung is about -900..-700 HU; -400 keeps partial-volume lung edges and stays below
# soft tissue, so every voxel of aerated lung inside the body is an air candidate.
LUNG_MAX_HU = -400
# The airway lumen is pure air (about -1000 HU); aerated parenchyma rarely falls below -950
# once noise is averaged, so "< -950" separates trachea and bronchi from the lung.
AIRWAY_MAX_HU = -950
# Cross-section of the trachea (13-25 mm wide) and main bronchi (8-16 mm), with margin.
AIRWAY_AREA_MM2 = (40.0, 1000.0)
# The trachea runs within a few centimetres of the body's left-right midline.
AIRWAY_MIDLINE_MM = 30.0
# Trachea + main and lobar bronchi hold well under this; more means the growing leaked into
# (emphysematous) lung, and then only the per-slice trachea seeds are removed.
AIRWAY_MAX_ML = 300.0
# A second air component below this share of the largest is not the other lung.
SECOND_LUNG_MIN_SHARE = 0.1
# Closing radius: pulls dense lesions that abut the pleura (and vessels at the hilum) into
# the lung mask, without bridging the mediastinum.
LUNG_CLOSING_MM = 4.0

# Pan et al. (Sci Rep 2021) and DESIGN step 3: ground-glass from -750 HU, consolidation from
# -350 HU, within the lungs.
GGO_MIN_HU = -750
CONSOLIDATION_MIN_HU = -350
# Opening width: vessels are tubes; a box this wide does not fit in a vessel narrower than
# about 3 mm (with its partial-volume rim), but fits inside any lesion worth annotating.
VESSEL_OPENING_MM = 3.0
# Smaller islands are noise or vessel stubs, not lesions a reader would draw.
MIN_LESION_MM3 = 20.0

_SLICE_4 = np.zeros((3, 3, 3), dtype=bool)  # 4-connectivity within each axial slice only
_SLICE_4[1] = ndimage.generate_binary_structure(2, 1)
_SLICE_8 = np.zeros((3, 3, 3), dtype=bool)  # 8-connectivity within each axial slice only
_SLICE_8[1] = True


# ---------------------------------------------------------------------------- small helpers


def _inplane_factor(shape: tuple[int, ...]) -> int:
    """Work at half resolution in-plane on big slices: morphology cost falls fourfold."""
    return 2 if min(shape[1], shape[2]) >= 256 else 1


def _downsample(hu: np.ndarray, factor: int) -> np.ndarray:
    """Mean of factor × factor in-plane blocks (edges cropped); averaging also halves noise."""
    if factor == 1:
        return hu.astype(np.int16, copy=False)
    ny, nx = (hu.shape[1] // 2) * 2, (hu.shape[2] // 2) * 2
    h = np.clip(hu[:, :ny, :nx], -1024, 3071).astype(np.int16)
    # Four HU values in [-1024, 3071] sum within int16, so no wider type is needed.
    total = h[:, ::2, ::2] + h[:, 1::2, ::2]
    total += h[:, ::2, 1::2]
    total += h[:, 1::2, 1::2]
    return total >> 2


def _upsample(labels: np.ndarray, factor: int, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour back to the full grid; an odd last row/column repeats its neighbour."""
    if factor == 1:
        return labels
    nz, sy, sx = labels.shape
    out = np.empty(shape, dtype=labels.dtype)
    view = out[:, : sy * 2, : sx * 2].reshape(nz, sy, 2, sx, 2)
    view[:] = labels[:, :, None, :, None]
    if shape[1] > sy * 2:
        out[:, sy * 2 :, :] = out[:, sy * 2 - 1 : sy * 2, :]
    if shape[2] > sx * 2:
        out[:, :, sx * 2 :] = out[:, :, sx * 2 - 1 : sx * 2]
    return out


def _voxel_mm3(spacing: Spacing) -> float:
    return float(spacing[0]) * float(spacing[1]) * float(spacing[2])


def _bbox(mask: np.ndarray, pad: int = 0) -> tuple[slice, ...] | None:
    """Bounding box of a mask as slices, grown by `pad` voxels and clipped to the array."""
    boxes = ndimage.find_objects(mask.astype(np.uint8, copy=False))
    if not boxes or boxes[0] is None:
        return None
    return tuple(
        slice(max(s.start - pad, 0), min(s.stop + pad, n))
        for s, n in zip(boxes[0], mask.shape, strict=True)
    )


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """Fill holes in every axial slice at once: background not reaching the slice edge.

    One 2D-per-slice labelling of the background is much faster than 300 calls of
    binary_fill_holes.
    """
    background, _ = ndimage.label(~mask, structure=_SLICE_4)
    edge_labels = np.unique(
        np.concatenate(
            [
                background[:, 0, :].ravel(),
                background[:, -1, :].ravel(),
                background[:, :, 0].ravel(),
                background[:, :, -1].ravel(),
            ]
        )
    )
    outside = np.zeros(int(background.max()) + 1, dtype=bool)
    outside[edge_labels] = True
    outside[0] = False
    return ~outside[background]


def _box_size(spacing: Spacing, width_mm: float, min_inplane: int = 1) -> tuple[int, int, int]:
    """Box width in voxels per (z, y, x) axis for a width in mm."""
    sx, sy, sz = (float(s) for s in spacing)
    return (
        max(1, round(width_mm / sz)),
        max(min_inplane, round(width_mm / sy)),
        max(min_inplane, round(width_mm / sx)),
    )


def _dilate_box(mask: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    # Reflected box: for an even width scipy centres the window one voxel low, so shift it.
    origin = tuple(-1 if n % 2 == 0 else 0 for n in size)
    return ndimage.maximum_filter(mask.view(np.uint8), size=size, origin=origin, mode="nearest")


def _erode_box(mask: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    return ndimage.minimum_filter(mask.view(np.uint8), size=size, mode="nearest")


def open_box(mask: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Morphological opening with a box: separable min/max filters, fast on big volumes."""
    if all(n == 1 for n in size):
        return mask.copy()
    return _dilate_box(_erode_box(mask, size), size).astype(bool) & mask


def close_box(mask: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Morphological closing with a box; pads so that the edges of the array do not erode."""
    pad = [(n, n) for n in size]
    padded = np.pad(mask, pad)
    closed = _erode_box(_dilate_box(padded, size), size).astype(bool)
    return closed[tuple(slice(n, -n) for n in size)] | mask


# ---------------------------------------------------------------------------- lungs


def body_mask(h: np.ndarray) -> np.ndarray:
    """The patient: largest component above -500 HU (drops the table), holes filled per slice."""
    return fill_holes_per_slice(_largest_component(h > BODY_MIN_HU))


def _slice_centre_x(mask: np.ndarray) -> np.ndarray:
    """Mean column of the mask on every slice (the image centre where a slice is empty)."""
    columns = mask.sum(axis=1, dtype=np.int64)  # (z, x)
    counts = columns.sum(axis=1)
    xs = np.arange(mask.shape[2])
    centre = (columns * xs).sum(axis=1) / np.maximum(counts, 1)
    return np.where(counts > 0, centre, (mask.shape[2] - 1) / 2)


def _mean3_inplane(h: np.ndarray) -> np.ndarray:
    return ndimage.uniform_filter(h, size=(1, 3, 3), output=np.float32)


def _airway_seeds(dark: np.ndarray, air: np.ndarray, body_cx: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Per-slice trachea test: small, round, very dark, near the midline and not part of a lung.

    In axial slices above the carina the trachea is a separate round air disc in the
    mediastinum; the lungs there are lateral and much larger.
    """
    sx, sy = float(spacing[0]), float(spacing[1])
    labels, n = ndimage.label(dark, structure=_SLICE_4)
    if n == 0:
        return np.zeros_like(dark)
    air_labels, _ = ndimage.label(air, structure=_SLICE_4)
    air_sizes = np.bincount(air_labels.ravel())
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = np.zeros(n + 1, dtype=bool)
    lo, hi = (a / (sx * sy) for a in AIRWAY_AREA_MM2)
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or not lo <= sizes[i] <= hi:
            continue
        rows, cols = box[1].stop - box[1].start, box[2].stop - box[2].start
        round_enough = sizes[i] >= 0.5 * rows * cols and max(rows, cols) <= 2.5 * min(rows, cols)
        centre_x = (box[2].start + box[2].stop - 1) / 2
        central = abs(centre_x - body_cx[box[0].start]) * sx <= AIRWAY_MIDLINE_MM
        if not (round_enough and central):
            continue
        inside = labels[box] == i
        air_size = air_sizes[air_labels[box][inside][0]]
        keep[i] = air_size <= 3 * sizes[i]  # isolated: not the core of a larger lung region
    return keep[labels]


def airway_mask(h: np.ndarray, air: np.ndarray, body: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Trachea and main bronchi: very dark air grown in 3D from the per-slice trachea seeds."""
    dark = air & (_mean3_inplane(h) < AIRWAY_MAX_HU)
    seeds = _airway_seeds(dark, air, _slice_centre_x(body), spacing)
    if not seeds.any():
        return seeds
    labels, _ = ndimage.label(dark)
    grown = np.isin(labels, np.unique(labels[seeds]))
    if np.count_nonzero(grown) * _voxel_mm3(spacing) / 1000.0 > AIRWAY_MAX_ML:
        return seeds  # leaked into the lung: remove only what the per-slice test saw
    return grown


def _split_at_midline(component: np.ndarray, body_cx: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Split lungs that touch (anterior junction line): per slice, cut at the thinnest column
    near the body midline."""
    profile = ndimage.uniform_filter1d(component.sum(axis=1, dtype=np.int32), 3, axis=1)  # (z, x)
    nx = component.shape[2]
    xs = np.arange(nx)
    window = 60.0 / float(spacing[0])  # search ±6 cm around the midline
    near = np.abs(xs[None, :] - body_cx[:, None]) <= window
    # Prefer the thinnest column; break ties towards the midline.
    cost = np.where(near, profile * nx + np.abs(xs[None, :] - body_cx[:, None]), np.inf)
    cut = np.argmin(cost, axis=1)
    right = xs[None, None, :] < cut[:, None, None]
    return np.where(component, np.where(right, RIGHT_LUNG, LEFT_LUNG), 0).astype(np.uint8)


def _centroid_x(mask: np.ndarray) -> float:
    columns = mask.sum(axis=(0, 1), dtype=np.int64)
    return float((columns * np.arange(mask.shape[2])).sum() / max(columns.sum(), 1))


def pick_lungs(air: np.ndarray, body_cx: np.ndarray, spacing: Spacing) -> np.ndarray:
    """The two largest air components are the lungs; one big component is split at the midline."""
    labels, n = ndimage.label(air)
    out = np.zeros(air.shape, dtype=np.uint8)
    if n == 0:
        return out
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    order = np.argsort(sizes)[::-1]
    first = labels == order[0]
    if n >= 2 and sizes[order[1]] >= SECOND_LUNG_MIN_SHARE * sizes[order[0]]:
        second = labels == order[1]
        right, left = (first, second) if _centroid_x(first) < _centroid_x(second) else (second, first)
        out[right] = RIGHT_LUNG
        out[left] = LEFT_LUNG
        return out
    split = _split_at_midline(first, body_cx, spacing)
    shares = np.bincount(split.ravel(), minlength=3)[1:] / max(np.count_nonzero(first), 1)
    if shares.min() >= 0.2:
        return split
    # One lung only (e.g. after pneumonectomy): name it by its side of the body.
    side = RIGHT_LUNG if _centroid_x(first) < float(np.median(body_cx)) else LEFT_LUNG
    out[first] = side
    return out


def _close_and_fill(lungs: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Vessels, airway walls and lesions belong to the lung: close each lung, fill its holes."""
    size = _box_size(spacing, 2 * LUNG_CLOSING_MM)
    out = np.zeros_like(lungs)
    for value in (RIGHT_LUNG, LEFT_LUNG):
        box = _bbox(lungs == value, pad=1)
        if box is None:
            continue
        lung = close_box(lungs[box] == value, size)
        lung = fill_holes_per_slice(lung)
        target = out[box]
        target[lung & (target == 0)] = value  # the first (right) lung wins where they meet
    return out


def segment_lungs(hu: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Lung mask (z, y, x) uint8: 0 outside, 1 right lung (smaller x), 2 left lung."""
    factor = _inplane_factor(hu.shape)
    h = _downsample(hu, factor)
    low_spacing = (float(spacing[0]) * factor, float(spacing[1]) * factor, float(spacing[2]))
    body = body_mask(h)
    # Inside the filled body only: air outside the patient never reaches the candidates.
    air = body & (h < LUNG_MAX_HU)
    airway = airway_mask(h, air, body, low_spacing)
    air &= ~ndimage.binary_dilation(airway, structure=_SLICE_8)  # and the airway's rim
    lungs = pick_lungs(air, _slice_centre_x(body), low_spacing)
    lungs = _close_and_fill(lungs, low_spacing)
    return _upsample(lungs, factor, hu.shape)


# ---------------------------------------------------------------------------- lesions


def _sum3(a: np.ndarray) -> np.ndarray:
    """Sum over the 3 × 3 × 3 neighbourhood (edges repeated), in place along each axis."""
    for axis in range(3):
        if a.shape[axis] < 2:
            continue
        a = a.copy() if axis == 0 else a
        src = a.copy()
        lead = [slice(None)] * 3
        lag = [slice(None)] * 3
        lead[axis], lag[axis] = slice(1, None), slice(None, -1)
        a[tuple(lead)] += src[tuple(lag)]
        a[tuple(lag)] += src[tuple(lead)]
        first = [slice(None)] * 3
        last = [slice(None)] * 3
        first[axis], last[axis] = slice(0, 1), slice(-1, None)
        a[tuple(first)] += src[tuple(first)]
        a[tuple(last)] += src[tuple(last)]
    return a


def smoothed_hu_sum(hu: np.ndarray) -> tuple[np.ndarray, int]:
    """27 × the 3 × 3 × 3 mean HU, and the divisor.

    A mean filter, not a median: the median of 3 × 3 × 3 takes ~30 s on 300 × 512 × 512,
    the mean ~0.3 s, and both suppress the noise that would scatter single voxels over
    the -750 HU threshold. HU is clipped to ±1024 first so the sum fits in int16;
    clipping bone changes nothing inside the lungs.
    """
    h = np.clip(hu, -1024, 1023).astype(np.int16)
    divisor = 1
    for axis in range(3):
        divisor *= 3 if h.shape[axis] >= 2 else 1
    return _sum3(h), divisor


def _drop_small(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    if min_voxels <= 1:
        return mask
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


def segment_lesions(hu: np.ndarray, lungs: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Lesion labels (z, y, x) uint8 inside the lungs: 1 ground-glass, 2 consolidation."""
    out = np.zeros(hu.shape, dtype=np.uint8)
    box = _bbox(lungs > 0)
    if box is None:
        return out
    total, k = smoothed_hu_sum(hu[box])
    inside = lungs[box] > 0
    opacity = inside & (total >= GGO_MIN_HU * k)
    # Open the union of both classes, so a vessel and its partial-volume rim (which sits in
    # the ground-glass range) go together, and a ground-glass halo keeps its solid core.
    opacity = open_box(opacity, _box_size(spacing, VESSEL_OPENING_MM, min_inplane=2))
    opacity = _drop_small(opacity, int(np.ceil(MIN_LESION_MM3 / _voxel_mm3(spacing))))
    dense = total >= CONSOLIDATION_MIN_HU * k
    target = out[box]
    target[opacity] = GGO
    target[opacity & dense] = CONSOLIDATION
    return out


def baseline_presegment(hu: np.ndarray, spacing: Spacing) -> tuple[np.ndarray, np.ndarray]:
    """(lesion labels, lung labels), both uint8 (z, y, x): the classical pre-segmentation."""
    lungs = segment_lungs(hu, spacing)
    return segment_lesions(hu, lungs, spacing), lungs

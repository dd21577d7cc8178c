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
AIRWAY_AREA_MM2 = (30.0, 1000.0)
# The trachea runs within a few centimetres of the body's left-right midline.
AIRWAY_MIDLINE_MM = 30.0
# Trachea + main and lobar bronchi hold well under this; more means the growing leaked into
# (emphysematous) lung, and then only the per-slice trachea seeds are removed.
AIRWAY_MAX_ML = 300.0
# A second air component below this share of the largest is not the other lung.
SECOND_LUNG_MIN_SHARE = 0.1
# An air pocket smaller than this is gas in the oesophagus or bowel, not a lung.
MIN_LUNG_ML = 20.0
# Small 3D closing (box width): vessels entering at the hilum and small dense lesions at
# the pleura join the lung, without bridging the mediastinum.
LUNG_CLOSING_MM = 6.0
# Wide in-plane closing, kept only on the costal side of each lung (lateral or posterior
# of its centre): subpleural consolidation, the typical finding of COVID-19 pneumonia in the
# dependent, peripheral lung, leaves a dent in the air mask up to a couple of centimetres
# wide. The anterior-medial surface has real dents (heart, hilum) that must stay outside.
PLEURAL_CLOSING_MM = 24.0

# Pan et al. (Sci Rep 2021) and DESIGN step 3: ground-glass from -750 HU, consolidation from
# -350 HU, within the lungs.
GGO_MIN_HU = -750
CONSOLIDATION_MIN_HU = -350
# Opening width: vessels are tubes; a box this wide does not fit in a vessel narrower than
# about 3 mm (with its partial-volume rim), but fits inside any lesion worth annotating.
VESSEL_OPENING_MM = 3.0
# Vessels that survive the opening (3-10 mm, near the hilum) are small bright structures: at
# this scale their curvature across the vessel is strongly negative, while the inside of an
# opacity is flat. Curvatures are eigenvalues of the scale-normalised Hessian (HU); below the
# threshold a direction counts as curved. Tuned on phantoms with vessel trees.
VESSEL_SIGMA_MM = 2.0
VESSEL_CURVATURE_HU = -60.0
# In 3D, a point whose least curved direction still has this share of the most curved one
# is the inside of a round blob, not a tube.
BLOB_CURVATURE_SHARE = 0.35
# A lesion holds at least one box this wide; a vessel fragment that survived the opening
# (3-5 mm vessels) does not. Opacities of pneumonia are larger than this.
LESION_CORE_MM = 5.0
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
    """factor 2: mean of 2 × 2 in-plane blocks (an odd last row/column dropped), which also
    halves the noise; factor 1: the volume as int16."""
    if factor == 1:
        return hu.astype(np.int16, copy=False)
    ny, nx = (hu.shape[1] // 2) * 2, (hu.shape[2] // 2) * 2
    h = hu[:, :ny, :nx]
    # Four values within ±8191 sum within int16, so no wider type (or copy) is needed;
    # padding values (-2000, -3024) pass, metal beyond 8191 HU is clipped first.
    if h.dtype != np.int16 or h.min() < -8191 or h.max() > 8191:
        h = np.clip(h, -8191, 8191).astype(np.int16)
    total = h[:, ::2, ::2] + h[:, 1::2, ::2]
    total += h[:, ::2, 1::2]
    total += h[:, 1::2, 1::2]
    return total >> 2


def _upsample(labels: np.ndarray, factor: int, shape: tuple[int, ...]) -> np.ndarray:
    """Undo _downsample: nearest neighbour (factor 2); an odd last row/column repeats its
    neighbour."""
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
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    if zs.size == 0:
        return None
    part = mask[zs[0] : zs[-1] + 1]
    ys = np.flatnonzero(part.any(axis=(0, 2)))
    xs = np.flatnonzero(part.any(axis=(0, 1)))
    return tuple(
        slice(max(int(lo) - pad, 0), min(int(hi) + 1 + pad, n))
        for lo, hi, n in zip((zs[0], ys[0], xs[0]), (zs[-1], ys[-1], xs[-1]), mask.shape, strict=True)
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
        # Isolated: the air region around it is its own rim, not a larger lung region.
        keep[i] = air_size <= max(4 * sizes[i], 1.5 * hi)
    return keep[labels]


def airway_mask(h: np.ndarray, air: np.ndarray, body: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Trachea and main bronchi: very dark air grown in 3D from the per-slice trachea seeds."""
    dark = air & (h < AIRWAY_MAX_HU)
    out = np.zeros_like(dark)
    # Work around the dark voxels only (trachea, bronchi, maybe gas in the oesophagus or
    # stomach): with a 2 cm margin the isolation test still sees the lungs next to them.
    margin = round(20.0 / float(spacing[0]))
    box = _bbox(dark, pad=margin)
    if box is None:
        return out
    body_cx = _slice_centre_x(body)[box[0]] - box[2].start
    seeds = _airway_seeds(dark[box], air[box], body_cx, spacing)
    if not seeds.any():
        return out
    labels, _ = ndimage.label(dark[box])
    grown = np.isin(labels, np.unique(labels[seeds]))
    if np.count_nonzero(grown) * _voxel_mm3(spacing) / 1000.0 > AIRWAY_MAX_ML:
        grown = seeds  # leaked into the lung: remove only what the per-slice test saw
    # With its partial-volume rim, which is lighter than -950 HU but still "air".
    out[box] = ndimage.binary_dilation(grown, structure=_SLICE_8)
    return out


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
    out = np.zeros(air.shape, dtype=np.uint8)
    box = _bbox(air)
    if box is None:
        return out
    out[box] = _pick_lungs_in(air[box], body_cx[box[0]] - box[2].start, spacing)
    return out


def _pick_lungs_in(air: np.ndarray, body_cx: np.ndarray, spacing: Spacing) -> np.ndarray:
    labels, n = ndimage.label(air)
    out = np.zeros(air.shape, dtype=np.uint8)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    sizes[sizes * _voxel_mm3(spacing) < MIN_LUNG_ML * 1000.0] = 0
    order = np.argsort(sizes)[::-1]
    if sizes[order[0]] == 0:
        return out
    first = labels == order[0]
    if n >= 2 and sizes[order[1]] > 0 and sizes[order[1]] >= SECOND_LUNG_MIN_SHARE * sizes[order[0]]:
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


def _costal_side(lung: np.ndarray, value: int) -> np.ndarray:
    """Voxels lateral or posterior to the lung's own centre, slice by slice (broadcastable)."""
    xs = np.arange(lung.shape[2])[None, None, :]
    ys = np.arange(lung.shape[1])[None, :, None]
    centre_x = _slice_centre_x(lung)[:, None, None]
    rows = lung.sum(axis=2, dtype=np.int64)  # (z, y)
    centre_y = (rows * np.arange(lung.shape[1])).sum(axis=1) / np.maximum(rows.sum(axis=1), 1)
    lateral = xs < centre_x if value == RIGHT_LUNG else xs > centre_x
    # Row index grows towards the patient's back (DICOM LPS, +y posterior).
    return lateral | (ys > centre_y[:, None, None])


def _close_and_fill(lungs: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Vessels, airway walls and lesions belong to the lung: close each lung, fill its holes."""
    small = _box_size(spacing, LUNG_CLOSING_MM)
    wide = (1, *_box_size(spacing, PLEURAL_CLOSING_MM)[1:])
    out = np.zeros_like(lungs)
    for value in (RIGHT_LUNG, LEFT_LUNG):
        box = _bbox(lungs == value, pad=1)
        if box is None:
            continue
        lung = lungs[box] == value
        closed = close_box(lung, small) | (close_box(lung, wide) & _costal_side(lung, value))
        closed = fill_holes_per_slice(closed)
        target = out[box]
        target[closed & (target == 0)] = value  # the first (right) lung wins where they meet
    return out


def segment_lungs(hu: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Lung mask (z, y, x) uint8: 0 outside, 1 right lung (smaller x), 2 left lung."""
    factor = _inplane_factor(hu.shape)
    h = _downsample(hu, factor)
    low_spacing = (float(spacing[0]) * factor, float(spacing[1]) * factor, float(spacing[2]))
    body = body_mask(h)
    # Inside the filled body only: air outside the patient never reaches the candidates.
    air = body & (h < LUNG_MAX_HU)
    air &= ~airway_mask(h, air, body, low_spacing)
    lungs = pick_lungs(air, _slice_centre_x(body), low_spacing)
    lungs = _close_and_fill(lungs, low_spacing)
    return _upsample(lungs, factor, hu.shape)


# ---------------------------------------------------------------------------- lesions


def neighbour_sum(a: np.ndarray, axes: Sequence[int] = (0, 1, 2)) -> np.ndarray:
    """Sum over the 3-wide neighbourhood along `axes`, edges repeated: two shifted adds each."""
    out = a
    for axis in axes:
        if a.shape[axis] < 2:
            continue
        src, out = out, out.copy()

        def along(part: slice, axis: int = axis) -> tuple[slice, ...]:
            return tuple(part if i == axis else slice(None) for i in range(a.ndim))

        out[along(slice(1, None))] += src[along(slice(None, -1))]
        out[along(slice(None, -1))] += src[along(slice(1, None))]
        out[along(slice(0, 1))] += src[along(slice(0, 1))]
        out[along(slice(-1, None))] += src[along(slice(-1, None))]
    return out


def _median_axes(spacing: Spacing) -> tuple[int, ...]:
    """3 × 3 × 3 for thin slices; in-plane 3 × 3 for thick ones, where a 3-slice window would
    span 1.5 cm and erase small lesions."""
    return (0, 1, 2) if float(spacing[2]) <= 2.5 else (1, 2)


def median_threshold(above: np.ndarray, inside: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """Median-filter-then-threshold, done as a majority vote on the thresholded mask.

    For a threshold t, median(hu) >= t exactly when more than half of the neighbourhood is
    >= t, so counting votes gives the median-3 result at the cost of a few additions (a
    real median filter of 300 × 512 × 512 takes ~30 s). Only lung voxels vote: the chest
    wall must not pull the lung's partial-volume rim over the threshold. A median, unlike a
    mean, does not widen thin bright vessels.
    """
    votes = neighbour_sum((above & inside).view(np.uint8), axes)
    voters = neighbour_sum(inside.view(np.uint8), axes)
    return inside & (2 * votes.astype(np.int16) > voters)


def _z_interior(inside: np.ndarray) -> np.ndarray:
    """Lung voxels whose slice neighbours above and below are lung too (or off the volume)."""
    interior = inside.copy()
    interior[1:] &= inside[:-1]
    interior[:-1] &= inside[1:]
    return interior


def keep_lesion_components(opacity: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Keep the components that hold a lesion core and are at least MIN_LESION_MM3 large."""
    labels, n = ndimage.label(opacity, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return opacity
    core = _erode_box(opacity, _box_size(spacing, LESION_CORE_MM, min_inplane=2)).astype(bool)
    keep = np.zeros(n + 1, dtype=bool)
    keep[np.unique(labels[core])] = True
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep &= sizes >= np.ceil(MIN_LESION_MM3 / _voxel_mm3(spacing))
    keep[0] = False
    return keep[labels]


def _block_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """Coarse mask: a block is set when any of its factor × factor in-plane voxels is."""
    if factor == 1:
        return mask
    ny, nx = -(-mask.shape[1] // factor) * factor, -(-mask.shape[2] // factor) * factor
    padded = np.zeros((mask.shape[0], ny, nx), dtype=bool)
    padded[:, : mask.shape[1], : mask.shape[2]] = mask
    return padded.reshape(mask.shape[0], ny // factor, factor, nx // factor, factor).any(axis=(2, 4))


def _second_derivatives(
    smooth: np.ndarray, points: tuple[np.ndarray, ...], steps: tuple[float, float, float], axes: Sequence[int]
) -> np.ndarray:
    """Hessian (n, k, k) over `axes` at `points`, by central differences (edges clamped)."""
    centre = smooth[points]

    def shifted(moves: dict[int, int]) -> np.ndarray:
        index = tuple(
            np.clip(p + moves.get(axis, 0), 0, smooth.shape[axis] - 1) for axis, p in enumerate(points)
        )
        return smooth[index]

    hessian = np.empty((centre.size, len(axes), len(axes)), dtype=np.float32)
    for i, a in enumerate(axes):
        hessian[:, i, i] = (shifted({a: 1}) - 2 * centre + shifted({a: -1})) / steps[a] ** 2
        for j, b in enumerate(axes[i + 1 :], start=i + 1):
            cross = (
                shifted({a: 1, b: 1})
                - shifted({a: 1, b: -1})
                - shifted({a: -1, b: 1})
                + shifted({a: -1, b: -1})
            )
            hessian[:, i, j] = hessian[:, j, i] = cross / (4 * steps[a] * steps[b])
    return hessian


def _vessel_test(hessian: np.ndarray) -> np.ndarray:
    """Vessel-like from Hessians at the vessel scale: strongly curved across, bright.

    In 3D a round blob (all three curvatures strong: a nodule, a small consolidation) is
    spared; a thick slice cannot tell a vessel seen end-on from a nodule, so 2D spares none.
    """
    eig = np.linalg.eigvalsh(hessian * VESSEL_SIGMA_MM**2)  # ascending: most curved first
    curved = eig[:, 0] < VESSEL_CURVATURE_HU
    if eig.shape[1] == 2:
        return curved
    blob = eig[:, 2] < BLOB_CURVATURE_SHARE * eig[:, 0]
    return curved & ~blob


def vessel_like(h: np.ndarray, inside: np.ndarray, candidates: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Candidate voxels that sit on a small bright structure (a vessel), by Hessian curvature.

    In-plane for thick slices (a 5 mm slice cannot tell a vessel from a nodule), 3D for thin
    ones; at half resolution on big slices (a 2 mm scale needs no finer grid) and only at
    the candidates, which keeps it well under a second.
    """
    factor = _inplane_factor(h.shape)
    g = _downsample(h, factor).astype(np.float32)
    # Outside the lung reads as aerated lung: the chest wall must not look like a bright edge.
    g[~_block_any(inside, factor)[:, : g.shape[1], : g.shape[2]]] = -850.0
    np.clip(g, -1000.0, 100.0, out=g)
    steps = (float(spacing[2]), float(spacing[1]) * factor, float(spacing[0]) * factor)
    axes = (0, 1, 2) if _median_axes(spacing) == (0, 1, 2) else (1, 2)
    sigma = tuple(VESSEL_SIGMA_MM / steps[a] if a in axes else 0.0 for a in range(3))
    smooth = ndimage.gaussian_filter(g, sigma=sigma)
    coarse = _block_any(candidates, factor)[:, : g.shape[1], : g.shape[2]]
    points = np.nonzero(coarse)
    vessel = np.zeros(coarse.shape, dtype=bool)
    if points[0].size:
        vessel[points] = _vessel_test(_second_derivatives(smooth, points, steps, axes))
    return _upsample(vessel, factor, h.shape) & candidates


def _regrow(kept: np.ndarray, allowed: np.ndarray, spacing: Spacing, width_mm: float) -> np.ndarray:
    """Grow `kept` back within `allowed` by about width_mm in-plane (conditional dilation)."""
    steps = max(1, round(width_mm / min(float(spacing[0]), float(spacing[1]))))
    box = _bbox(kept, pad=steps)
    if box is None:
        return kept
    out = kept.copy()
    out[box] = ndimage.binary_dilation(kept[box], structure=_SLICE_8, iterations=steps, mask=allowed[box])
    return out


def segment_lesions(hu: np.ndarray, lungs: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Lesion labels (z, y, x) uint8 inside the lungs: 1 ground-glass, 2 consolidation."""
    out = np.zeros(hu.shape, dtype=np.uint8)
    # One voxel of margin: the crop's edge must not look like lung continuing off the volume.
    box = _bbox(lungs > 0, pad=1)
    if box is None:
        return out
    h, inside = hu[box], lungs[box] > 0
    axes = _median_axes(spacing)
    candidates = median_threshold(h >= GGO_MIN_HU, inside, axes)
    dense = median_threshold(h >= CONSOLIDATION_MIN_HU, inside, axes)
    # At the apex and the base a slice that grazes the diaphragm or the chest wall averages
    # lung with soft tissue into the ground-glass range (partial volume): ground-glass on the
    # lung's cranio-caudal surface is not trusted; consolidation there is kept.
    candidates &= dense | _z_interior(inside)
    opacity = candidates & ~vessel_like(h, inside, candidates, spacing)
    # Open the union of both classes, so a vessel and its partial-volume rim (which sits in
    # the ground-glass range) go together, and a ground-glass halo keeps its solid core.
    opacity = open_box(opacity, _box_size(spacing, VESSEL_OPENING_MM, min_inplane=2))
    opacity = keep_lesion_components(opacity, spacing)
    # The curvature test also shaves the edge of a dense opacity: give that rim back.
    opacity = _regrow(opacity, candidates, spacing, 2 * VESSEL_SIGMA_MM)
    target = out[box]
    target[opacity] = GGO
    target[opacity & dense] = CONSOLIDATION
    return out


def baseline_presegment(hu: np.ndarray, spacing: Spacing) -> tuple[np.ndarray, np.ndarray]:
    """(lesion labels, lung labels), both uint8 (z, y, x): the classical pre-segmentation."""
    lungs = segment_lungs(hu, spacing)
    return segment_lesions(hu, lungs, spacing), lungs

"""Lesion primitives (lobulated blobs, where to put them) and the generic lesions of make_phantom."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from demo.phantoms.shapes import Grid
from demo.phantoms.tissues import LUNG_LUT, T_CONS, T_GGO, T_LUNG, T_VESSEL, T_VESSEL_EDGE, one_of


def add_lesions(
    label: np.ndarray, grid: Grid, rng: np.random.Generator, count: int | None
) -> list[tuple[tuple[slice, ...], np.ndarray, np.ndarray]]:
    """Draw lesions into `label`; returns the HU texture offsets to add to each one afterwards.

    Consolidations go first and ground glass only fills lung that is not lesion yet, so lesions
    never overwrite one another, and a ground-glass lesion centred on a consolidation makes the
    'halo' pattern seen in infection."""
    if count is None:
        n_ggo, n_cons = int(rng.integers(2, 5)), int(rng.integers(2, 4))
    else:
        n_cons = count // 2
        n_ggo = count - n_cons
    plans = [(T_CONS, float(rng.uniform(5, 14))) for _ in range(n_cons)]
    plans += [(T_GGO, float(rng.uniform(8, 22))) for _ in range(n_ggo)]
    centres: list[tuple[np.ndarray, float]] = []
    offsets = []
    halo = n_cons > 0 and n_ggo > 0 and rng.random() < 0.5
    for i, (tissue, radius) in enumerate(plans):
        for _attempt in range(20):
            if halo and i == n_cons and centres:
                centre, radius = centres[0][0], centres[0][1] * float(rng.uniform(1.7, 2.2))
            else:
                centre = lesion_centre(label, grid, rng, centres, radius)
            written = blob(label, grid, rng, centre, radius, tissue)
            if written is not None:
                centres.append((centre, radius))
                offsets.append(written)
                break
    return offsets


def lesion_centre(
    label: np.ndarray,
    grid: Grid,
    rng: np.random.Generator,
    taken: list[tuple[np.ndarray, float]],
    radius: float,
) -> np.ndarray:
    """A lung voxel (mm, x y z) not too close to the lesions already placed; rejection sampling is
    cheap because the lungs fill much of the volume, and a list of all lung voxels is not (GBs)."""
    ks = np.flatnonzero((grid.t > 0.12) & (grid.t < 0.85))
    if ks.size == 0:  # two or three slices: take any
        ks = np.arange(grid.t.size)
    best = None
    for attempt in range(4000):
        k, r, c = int(rng.choice(ks)), int(rng.integers(label.shape[1])), int(rng.integers(label.shape[2]))
        if label[k, r, c] != T_LUNG:
            continue
        p = np.array([grid.x[c], grid.y[r], grid.z[k]], np.float32)
        best = p
        spread = 0.8 if attempt < 3000 else 0.0
        if all(np.linalg.norm(p - q) > spread * (radius + rq) for q, rq in taken):
            return p
    if best is None:
        raise ValueError("the phantom has no lung to put lesions in; use more slices")
    return best


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit-variance noise that varies over about a quarter of the box: random weights on a 5×5×5
    grid of Gaussian bumps, summed separably (one small matrix product per axis)."""
    weights = rng.normal(size=(5, 5, 5)).astype(np.float32)
    knots = np.linspace(0, 1, 5, dtype=np.float32)
    bases = [
        np.exp(-(((np.linspace(0, 1, n, dtype=np.float32)[:, None] - knots) / 0.22) ** 2)) for n in shape
    ]
    field = np.einsum("ijk,zi,yj,xk->zyx", weights, *bases, optimize=True)
    return field / max(float(field.std()), 1e-6)


def blob(
    label: np.ndarray,
    grid: Grid,
    rng: np.random.Generator,
    centre: np.ndarray,
    radius: float,
    tissue: int,
    *,
    max_depth_mm: float | None = None,
) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray] | None:
    """Write one lesion: a randomly rotated ellipsoid whose surface is pushed in and out by smooth
    noise (a lobulated blob), kept to lung voxels that are not lesion yet and to its largest piece;
    with `max_depth_mm`, also to lung within that distance of the lung's edge (subpleural)."""
    axes = radius * rng.uniform(0.7, 1.3, size=3)
    reach = 1.45 * float(axes.max())
    where = tuple(
        grid.index_range(ax, float(centre[2 - ax] - reach), float(centre[2 - ax] + reach)) for ax in range(3)
    )
    crop = label[where]
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0].astype(np.float32)
    dx = (grid.x[where[2]] - centre[0])[None, None, :]
    dy = (grid.y[where[1]] - centre[1])[:, None][None]
    dz = (grid.z[where[0]] - centre[2])[:, None, None]
    rho2 = sum(
        ((dx * rot[0, j] + dy * rot[1, j] + dz * rot[2, j]) / np.float32(axes[j])) ** 2 for j in range(3)
    )
    rho = np.sqrt(rho2)
    smooth = smooth_noise(rng, crop.shape)
    inside = (rho < 1 + 0.25 * smooth) & one_of(crop, {T_LUNG, T_VESSEL, T_VESSEL_EDGE})
    if max_depth_mm is not None:
        inside &= _near_edge(LUNG_LUT[crop] > 0, grid.step, max_depth_mm)
    pieces, n = ndimage.label(inside)
    if n == 0:
        return None
    inside = pieces == (np.argmax(np.bincount(pieces.ravel())[1:]) + 1)
    if inside.sum() < 5:  # clipped to a sliver by the pleura: try another place
        return None
    crop[inside] = tissue
    # Texture: denser centre, patchy inside, and a per-lesion shift of the mean.
    fade, patchy, shift = (50.0, 30.0, 15.0) if tissue == T_GGO else (30.0, 20.0, 12.0)
    offset = rng.normal(0, shift) + patchy * smooth[inside] + fade * (0.75 - np.minimum(rho[inside], 1.2))
    return where, inside, np.round(offset).astype(np.int16)


def _near_edge(lung: np.ndarray, step: np.ndarray, limit_mm: float) -> np.ndarray:
    """Lung voxels within `limit_mm` of a non-lung voxel. The distance is taken on voxels of at
    least ~2 mm (to within a voxel is plenty here): on a fine 512² grid the exact transform of a
    large lesion's box costs seconds."""
    f = np.maximum(1, np.floor(2.0 / step)).astype(int)
    coarse = lung[:: f[0], :: f[1], :: f[2]]
    near = ndimage.distance_transform_edt(coarse, sampling=step * f) <= limit_mm
    for axis in range(3):
        near = np.repeat(near, f[axis], axis=axis)
    return near[: lung.shape[0], : lung.shape[1], : lung.shape[2]]

"""Tiny synthetic chest CT volumes with exactly known truth, for the modelassist tests.

Arrays are (z, y, x); spacing is (x, y, z) mm; as in the project's volumes (sorted by
ascending patient z), slice 0 is the most caudal and the trachea is in the last slices. The
picture is
a body ellipse of soft tissue on a scanner table, two lung ellipsoids at -850 HU, a trachea
that splits into two main bronchi entering the lungs (so the lungs touch through the
airway, as in real CT), thin vessels at +40 HU, ground-glass balls at -600 HU and
consolidation balls at -100 HU, one of them against the chest wall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

Spacing = tuple[float, float, float]


@dataclass(frozen=True)
class SyntheticChest:
    hu: np.ndarray  # int16 (z, y, x)
    lungs: np.ndarray  # uint8: 1 right lung (smaller x), 2 left lung
    lesions: np.ndarray  # uint8: 1 ground-glass, 2 consolidation
    vessels: np.ndarray  # bool
    airway: np.ndarray  # bool: trachea and main bronchi outside the lungs
    trachea: np.ndarray  # bool: the trachea above the carina
    spacing: Spacing


def _grid(shape: tuple[int, int, int], spacing: Spacing) -> tuple[np.ndarray, ...]:
    """Voxel-centre coordinates in mm, centred on the volume, as broadcastable (z, y, x)."""
    nz, ny, nx = shape
    sx, sy, sz = spacing
    z = ((np.arange(nz) - (nz - 1) / 2) * sz).astype(np.float32)[:, None, None]
    y = ((np.arange(ny) - (ny - 1) / 2) * sy).astype(np.float32)[None, :, None]
    x = ((np.arange(nx) - (nx - 1) / 2) * sx).astype(np.float32)[None, None, :]
    return z, y, x


def _box(centre: np.ndarray, radius: float, shape: tuple[int, ...], spacing: Spacing):
    """Index slices of the voxels within `radius` mm of `centre` (z, y, x mm), or None."""
    steps = np.array(spacing[::-1])
    half = np.array(shape) / 2
    lo = np.floor((centre - radius) / steps + half - 0.5).astype(int) - 1
    hi = np.ceil((centre + radius) / steps + half - 0.5).astype(int) + 2
    lo, hi = np.maximum(lo, 0), np.minimum(hi, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def _segment_distance(
    grid: tuple[np.ndarray, ...], box: tuple[slice, ...], a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """Distance (mm) of each voxel in `box` to the segment a-b (points in z, y, x mm)."""
    z, y, x = (g[tuple(s if g.shape[i] > 1 else slice(None) for i, s in enumerate(box))] for g in grid)
    ab = b - a
    t = ((z - a[0]) * ab[0] + (y - a[1]) * ab[1] + (x - a[2]) * ab[2]) / float(ab @ ab)
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt((z - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (x - a[2] - t * ab[2]) ** 2)


def _paint_segment(
    vol: np.ndarray,
    mask: np.ndarray,
    grid: tuple[np.ndarray, ...],
    spacing: Spacing,
    a: np.ndarray,
    b: np.ndarray,
    radius: float,
    value: float,
) -> None:
    """Draw a tube (or a ball when a == b is nudged) with a one-voxel partial-volume edge."""
    box = _box((a + b) / 2, float(np.linalg.norm(b - a)) / 2 + radius + 1, vol.shape, spacing)
    if box is None:
        return
    dist = _segment_distance(grid, box, a, b)
    edge = min(spacing)
    frac = np.clip((radius - dist) / edge + 0.5, 0.0, 1.0)
    sub = vol[box]
    sub += frac * (value - sub)
    mask[box] |= dist <= radius


def _ellipsoid(grid, centre, axes) -> np.ndarray:
    z, y, x = grid
    return ((z - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 + (
        (x - centre[2]) / axes[2]
    ) ** 2 <= 1.0


def make_chest(
    shape: tuple[int, int, int] = (48, 192, 192),
    spacing: Spacing = (1.8, 1.8, 4.0),
    seed: int = 0,
    *,
    noise: float = 25.0,
    n_ggo: int = 3,
    n_consolidation: int = 2,
    n_vessels: int = 6,
    vessel_radius: tuple[float, float] = (0.8, 1.4),
    lung_offset: float = 0.37,
) -> SyntheticChest:
    """A chest phantom; `lung_offset` (share of the half width) below ~0.27 makes the lungs
    touch at the midline, like an anterior junction line."""
    rng = np.random.default_rng(seed)
    grid = _grid(shape, spacing)
    z, y, x = grid
    nz, ny, nx = shape
    half_z, half_y, half_x = nz * spacing[2] / 2, ny * spacing[1] / 2, nx * spacing[0] / 2
    vol = np.full(shape, -1000.0, dtype=np.float32)

    body2d = (x / (0.85 * half_x)) ** 2 + (y / (0.62 * half_y)) ** 2 <= 1.0
    table2d = (y > 0.72 * half_y) & (y < 0.80 * half_y) & (np.abs(x) < 0.9 * half_x)
    vol[np.broadcast_to(body2d, shape)] = 40.0
    vol[np.broadcast_to(table2d, shape)] = 200.0

    lung_axes = (0.78 * half_z, 0.42 * half_y, 0.27 * half_x)
    lung_centres = [
        np.array([0.15 * half_z, 0.0, -lung_offset * half_x], dtype=np.float32),  # right: image left
        np.array([0.15 * half_z, 0.0, lung_offset * half_x], dtype=np.float32),
    ]
    lungs = np.zeros(shape, dtype=np.uint8)
    right, left = (_ellipsoid(grid, centre, lung_axes) for centre in lung_centres)
    lungs[right] = 1
    lungs[left] = 2
    lungs[right & left & (x < 0)] = 1  # touching lungs meet at the midline
    vol[lungs > 0] = -850.0

    lesions = np.zeros(shape, dtype=np.uint8)
    vessels = np.zeros(shape, dtype=bool)
    airway = np.zeros(shape, dtype=bool)
    vessel_mask = np.zeros(shape, dtype=bool)

    # Vessels: thin tubes running from near the hilum out into each lung.
    for i in range(n_vessels):
        centre = lung_centres[i % 2]
        side = np.sign(centre[2])
        start = centre + np.array([rng.uniform(-0.3, 0.3) * lung_axes[0], 0.0, -side * 0.5 * lung_axes[2]])
        direction = rng.normal(size=3)
        direction[2] = side * abs(direction[2])
        direction /= np.linalg.norm(direction)
        end = start + direction * 0.6 * np.array(lung_axes)
        radius = rng.uniform(*vessel_radius)
        _paint_segment(vol, vessel_mask, grid, spacing, start, end, radius, 40.0)
    vessels = vessel_mask & (lungs > 0)

    # Lesions: balls well inside a lung, plus one consolidation against the chest wall.
    def inner_point(lung: int, depth: float) -> np.ndarray:
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        return lung_centres[lung] + u * depth * rng.uniform(0.0, 1.0) * np.array(lung_axes)

    specs = [(1, -600.0, inner_point(i % 2, 0.55), rng.uniform(10.0, 18.0)) for i in range(n_ggo)]
    specs += [(2, -100.0, inner_point(i % 2, 0.55), rng.uniform(7.0, 12.0)) for i in range(n_consolidation)]
    if n_consolidation:
        pleura = lung_centres[1] + np.array([0.0, 0.0, 0.95 * lung_axes[2]], dtype=np.float32)
        specs.append((2, -100.0, pleura, 12.0))
    for value, hu_value, centre, radius in specs:
        ball = np.zeros(shape, dtype=bool)
        _paint_segment(vol, ball, grid, spacing, centre, centre + 1e-3, radius, hu_value)
        lesions[ball & (lungs > 0)] = np.maximum(lesions[ball & (lungs > 0)], value)
    vessels &= lesions == 0

    # Trachea down to the carina, then one main bronchus into each lung.
    carina = np.array([-0.25 * half_z, -0.2 * half_y, 0.0], dtype=np.float32)
    top = np.array([-half_z - spacing[2], -0.2 * half_y, 0.0], dtype=np.float32)
    _paint_segment(vol, airway, grid, spacing, top, carina, 8.0, -1000.0)
    trachea = airway & (z < carina[0])
    for centre in lung_centres:
        target = centre + np.array([-0.2 * lung_axes[0], -0.3 * lung_axes[1], 0.0], dtype=np.float32)
        _paint_segment(vol, airway, grid, spacing, carina, target, 5.0, -1000.0)
    # Intrapulmonary bronchi are lung; only the airway outside the lungs is not.
    lesions[airway] = 0
    vessels &= ~airway
    airway &= lungs == 0

    # Drawn head first (z grows towards the feet); stored feet first like the scans.
    lungs, lesions, vessels, airway, trachea = (
        a[::-1].copy() for a in (lungs, lesions, vessels, airway, trachea)
    )
    vol = np.ascontiguousarray(vol[::-1])
    vol = ndimage.gaussian_filter(vol, sigma=0.5)
    vol += rng.normal(0.0, noise, size=shape).astype(np.float32)
    hu = np.clip(np.rint(vol), -1024, 3071).astype(np.int16)
    return SyntheticChest(
        hu=hu, lungs=lungs, lesions=lesions, vessels=vessels, airway=airway, trachea=trachea, spacing=spacing
    )

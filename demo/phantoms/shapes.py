"""The voxel grid, the patient's habitus, and the shapes drawn into a label volume (discs,
ellipsoids, tapered tubes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from demo.phantoms.tissues import one_of

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Grid:
    """Voxel-centre coordinates in mm, relative to the body's centre line (LPS directions)."""

    x: np.ndarray  # (cols,)
    y: np.ndarray  # (rows,)
    z: np.ndarray  # (slices,) from the first slice
    t: np.ndarray  # (slices,) z as a fraction of the scanned length: 0 base side, 1 apex side
    step: np.ndarray  # (3,) spacing in (z, y, x) order

    def index_range(self, axis: int, lo: float, hi: float) -> slice:
        coords = (self.z, self.y, self.x)[axis]
        i0 = int(np.floor((lo - coords[0]) / self.step[axis]))
        i1 = int(np.ceil((hi - coords[0]) / self.step[axis])) + 1
        return slice(max(i0, 0), min(max(i1, 0), coords.size))


@dataclass(frozen=True)
class Body:
    """Patient habitus in mm, drawn once per anatomy seed."""

    a: float  # half width
    b_ant: float  # centre to anterior skin
    b_post: float  # centre to posterior skin
    fat: float  # subcutaneous fat thickness
    ac: float  # thoracic cavity half width
    bca: float  # cavity, anterior
    bcp: float  # cavity, posterior

    @property
    def spine_front(self) -> float:
        return self.bcp - 37.0


def superellipse_radius(
    x: np.ndarray, y: np.ndarray, a: float, b_ant: float, b_post: float, p: float = 2.3
) -> np.ndarray:
    """Normalised radius of a superellipse with different anterior and posterior reach (<1 inside)."""
    yy = np.where(y < 0, y / b_ant, y / b_post)
    return (np.abs(x / a) ** p + np.abs(yy) ** p) ** (1 / p)


def disc(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    return (x - cx) ** 2 + (y - cy) ** 2 < r * r


def ellipsoid(
    label: np.ndarray,
    grid: Grid,
    centre: Vec3,
    axes: Vec3,
    layers: list[tuple[float, int]],
    allowed: set[int],
) -> None:
    """Write an axis-aligned ellipsoid; layers are (extra scale, label) from outside in."""
    reach = max(axes) * (1 + max(extra for extra, _ in layers))
    where = tuple(grid.index_range(ax, centre[2 - ax] - reach, centre[2 - ax] + reach) for ax in range(3))
    crop = label[where]
    e = (
        ((grid.x[where[2]] - centre[0]) / axes[0])[None, None, :] ** 2
        + ((grid.y[where[1]] - centre[1]) / axes[1])[None, :, None] ** 2
        + ((grid.z[where[0]] - centre[2]) / axes[2])[:, None, None] ** 2
    )
    ok = one_of(crop, allowed)
    for extra, value in layers:
        crop[ok & (e < (1 + extra) ** 2)] = value


def tube(
    label: np.ndarray,
    grid: Grid,
    p0: Vec3,
    p1: Vec3,
    r0: float,
    r1: float,
    layers: list[tuple[float, int]],
    allowed: set[int],
) -> None:
    """Write a tapered capsule from p0 to p1 (mm, x y z); layers are (extra radius mm, label) from
    outside in, and only voxels whose label is in `allowed` beforehand are changed."""
    a, b = np.asarray(p0, np.float32), np.asarray(p1, np.float32)
    pad = max(r0, r1) + max(extra for extra, _ in layers) + 1
    lo, hi = np.minimum(a, b) - pad, np.maximum(a, b) + pad
    where = tuple(grid.index_range(ax, float(lo[2 - ax]), float(hi[2 - ax])) for ax in range(3))
    crop = label[where]
    if crop.size == 0:
        return
    dx = (grid.x[where[2]] - a[0])[None, None, :]
    dy = (grid.y[where[1]] - a[1])[None, :, None]
    dz = (grid.z[where[0]] - a[2])[:, None, None]
    seg = b - a
    t = np.clip((dx * seg[0] + dy * seg[1] + dz * seg[2]) / max(float(seg @ seg), 1e-6), 0, 1)
    d2 = (dx - t * seg[0]) ** 2 + (dy - t * seg[1]) ** 2 + (dz - t * seg[2]) ** 2
    radius = r0 + (r1 - r0) * t
    ok = one_of(crop, allowed)
    for extra, value in layers:
        crop[ok & (d2 < (radius + extra) ** 2)] = value

"""Synthetic chest CT phantom, and the DICOM writer that turns it (or a real NRRD volume) into a series.

Demo data, tests and benchmarks need chest CTs whose ground truth is known exactly. The phantom
draws a thorax from simple shapes (body wall, ribs, spine, mediastinum, heart, great vessels,
airways, a vessel tree, two lungs that taper at the apex and sit on diaphragm domes) and puts
ground-glass and consolidation lesions into the lungs. Everything is built as a small-integer
tissue label volume first and turned into Hounsfield units in one pass at the end, so the lesion
and lung masks are exactly the voxels that carry lesion and lung values.

Array order is (z, y, x) = (slice, row, column). Slice 0 has the smallest z position, so index 0
is the lung base (feet side) and the last slice the apex. Patient coordinates are DICOM LPS:
+x is the patient's left (column 0 shows the patient's right), +y posterior (row 0 is anterior),
+z superior.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds
from scipy import ndimage
from scipy.special import ndtri

Vec3 = tuple[float, float, float]

GROUND_TRUTH_FILE = "ground_truth.npz"

# Lesion classes in `Phantom.lesions` (the campaign label schema uses the same numbers).
GGO = 1  # ground-glass opacity: hazy increase in lung density (~ -600 HU)
CONSOLIDATION = 2  # airspace filled, as dense as soft tissue minus a little air (~ -100 HU)
RIGHT_LUNG, LEFT_LUNG = 1, 2

# Tissue labels used while building. Each row: mean HU, noise sigma (HU), lung?, lesion class.
# Noise sigma is the CT noise (~15 HU) combined with the tissue's own texture.
_T_PAD, _T_AIR, _T_TABLE, _T_FAT, _T_MUSCLE, _T_MEDFAT, _T_ABDOMEN, _T_LUNG = range(8)
_T_SOFT, _T_BONE, _T_MARROW, _T_DISC, _T_CSF, _T_AIRWAY, _T_VESSEL, _T_VESSEL_EDGE = range(8, 16)
_T_GGO, _T_CONS = 16, 17
_TISSUES: dict[int, tuple[float, float, int, int]] = {
    _T_PAD: (-1024, 0, 0, 0),  # outside the reconstruction circle: scanners write a flat minimum
    _T_AIR: (-1000, 15, 0, 0),
    _T_TABLE: (150, 25, 0, 0),  # carbon-fibre couch: a bright line a threshold must not call body
    _T_FAT: (-100, 15, 0, 0),
    _T_MUSCLE: (50, 15, 0, 0),
    _T_MEDFAT: (-90, 15, 0, 0),  # mediastinal fat, also what fills the cavity until lungs are drawn
    _T_ABDOMEN: (55, 15, 0, 0),  # liver and spleen under the diaphragm
    _T_LUNG: (-850, 34, 1, 0),  # sqrt(30² parenchyma texture + 15² CT noise)
    _T_SOFT: (40, 15, 0, 0),  # heart, great vessels, airway walls, oesophagus
    _T_BONE: (700, 45, 0, 0),  # cortical bone
    _T_MARROW: (250, 35, 0, 0),  # cancellous bone inside vertebrae, ribs, sternum
    _T_DISC: (80, 15, 0, 0),  # intervertebral disc
    _T_CSF: (10, 15, 0, 0),  # spinal canal
    _T_AIRWAY: (-1000, 15, 0, 0),  # trachea, bronchi, stomach gas
    _T_VESSEL: (40, 15, 1, 0),  # intrapulmonary vessels belong to the lung mask
    _T_VESSEL_EDGE: (-420, 30, 1, 0),  # partial-volume rim, so vessels are not hard-edged
    _T_GGO: (-600, 38, 1, GGO),
    _T_CONS: (-100, 25, 1, CONSOLIDATION),
}


_VESSEL_TARGETS = 1200  # points per lung the vessel tree must reach
_NOISE_BITS = 11  # tissue label (< 32) and noise draw share one uint16 index into _HU_TABLE


def _lut(column: int) -> np.ndarray:
    table = np.zeros(256, dtype=np.uint8)
    for label, row in _TISSUES.items():
        table[label] = row[column]
    return table


def _hu_table() -> np.ndarray:
    """HU for every (tissue, noise draw) pair: mean + sigma × one of 2048 equally likely standard
    normal quantiles. One table look-up per voxel then gives a noisy HU directly, several times
    faster than drawing float noise and scaling it per tissue (Gaussian up to ±3.3 sigma)."""
    levels = 1 << _NOISE_BITS
    quantiles = ndtri((np.arange(levels) + 0.5) / levels)
    table = np.zeros((32, levels), dtype=np.int16)
    for label, (mean, sigma, _, _) in _TISSUES.items():
        table[label] = np.clip(np.rint(mean + sigma * quantiles), -1024, 3071)
    return table.ravel()


_HU_TABLE = _hu_table()
_LUNG_LUT, _LESION_LUT = _lut(2), _lut(3)


@dataclass
class Phantom:
    """A synthetic CT volume and its ground truth, all (z, y, x) with slice 0 at the smallest z."""

    hu: np.ndarray  # int16 Hounsfield units
    lesions: np.ndarray  # uint8: 0 background, 1 ground-glass opacity, 2 consolidation
    lungs: np.ndarray  # uint8: 0 outside, 1 right lung, 2 left lung (vessels and lesions included)
    spacing: Vec3  # mm: (column spacing x, row spacing y, slice spacing z)
    origin: Vec3  # mm: patient position (LPS) of voxel [0, 0, 0]


@dataclass
class GroundTruth:
    lesions: np.ndarray
    lungs: np.ndarray
    spacing: Vec3
    origin: Vec3


@dataclass(frozen=True)
class _Grid:
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
class _Body:
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


def _draw_body(rng: np.random.Generator) -> _Body:
    a = float(rng.uniform(135, 158))
    b_ant, b_post = a * float(rng.uniform(0.62, 0.7)), a * float(rng.uniform(0.78, 0.84))
    fat = float(rng.uniform(8, 24))
    # Chest wall muscle is ~10 mm, the paraspinal muscles behind the ribs ~35 mm.
    return _Body(a, b_ant, b_post, fat, a - fat - 10, b_ant - fat - 10, b_post - fat - 35)


def _rho(x: np.ndarray, y: np.ndarray, a: float, b_ant: float, b_post: float, p: float = 2.3) -> np.ndarray:
    """Normalised radius of a superellipse with different anterior and posterior reach (<1 inside)."""
    yy = np.where(y < 0, y / b_ant, y / b_post)
    return (np.abs(x / a) ** p + np.abs(yy) ** p) ** (1 / p)


def _one_of(labels: np.ndarray, wanted: set[int]) -> np.ndarray:
    """np.isin for uint8 labels through a 256-entry table: several times faster on small crops."""
    table = np.zeros(256, dtype=bool)
    table[list(wanted)] = True
    return table[labels]


def _disc(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    return (x - cx) ** 2 + (y - cy) ** 2 < r * r


def make_phantom(
    slices: int = 64,
    rows: int = 256,
    cols: int = 256,
    seed: int = 0,
    spacing: tuple[float, float, float] | None = None,
    lesions: int | None = None,
    *,
    anatomy_seed: int | None = None,
) -> Phantom:
    """Build a chest CT phantom.

    `lesions` is the total count (half consolidation rounded down, the rest ground glass; 0 for a
    healthy scan); by default 2–4 ground-glass and 2–3 consolidation lesions. `anatomy_seed`
    (default `seed`) draws the body, so serial scans of one patient share anatomy and differ only
    in lesions and noise. Default spacing fits the body to ~80 % of the field of view, with slices
    spaced so the scan spans ~320 mm (0.625–5 mm). Anatomy is sized in mm, so an explicit
    `spacing` that is much finer or coarser than the default under- or over-fills the view.
    """
    if slices < 2 or rows < 8 or cols < 8:
        raise ValueError("a phantom needs at least 2 slices of 8 × 8 pixels")
    rng_anat = np.random.default_rng(seed if anatomy_seed is None else anatomy_seed)
    rng_les, rng_noise = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    body = _draw_body(rng_anat)
    if spacing is None:
        pixel = max(2 * body.a / (0.8 * cols), (body.b_ant + body.b_post) / (0.75 * rows))
        spacing = (round(pixel, 4), round(pixel, 4), round(float(np.clip(320 / slices, 0.625, 5.0)), 4))
    sx, sy, sz = (float(v) for v in spacing)
    # The body's centre line sits in the middle column and a little above the middle row, so the
    # couch fits underneath.
    x = (np.arange(cols, dtype=np.float32) - (cols - 1) / 2) * sx
    y = (np.arange(rows, dtype=np.float32) - rows * 0.5) * sy + (body.b_post - body.b_ant) / 2 + 8
    z = np.arange(slices, dtype=np.float32) * sz
    grid = _Grid(x, y, z, z / max(z[-1], 1e-3), np.array([sz, sy, sx], dtype=np.float32))

    label = _build_anatomy(grid, body, rng_anat)
    lesion_offsets = _add_lesions(label, grid, rng_les, lesions)
    hu, lesion_mask, lung_mask = _render(label, rng_noise)
    for where, mask, offset in lesion_offsets:
        hu[where][mask] += offset
    # The mediastinal strip keeps each lung on its own side of the midline.
    lung_mask[:, :, int(np.searchsorted(x, 0)) :] *= LEFT_LUNG
    origin = (round(float(x[0]), 3), round(float(y[0]), 3), round(-float(z[-1]) - 60.0, 3))
    return Phantom(hu, lesion_mask, lung_mask, (sx, sy, sz), origin)


# --- anatomy -------------------------------------------------------------------------------------


def _cavity_scale(t: np.ndarray) -> np.ndarray:
    """How wide the rib cage is at each height: full over the lower half, narrowing to the
    thoracic inlet, where shoulder and neck muscle take the room (the body outline stays)."""
    return np.interp(t, [0.0, 0.45, 1.0], [1.0, 1.0, 0.78]).astype(np.float32)


def _build_anatomy(grid: _Grid, body: _Body, rng: np.random.Generator) -> np.ndarray:
    xx, yy = np.meshgrid(grid.x, grid.y)  # (rows, cols)
    base, lung_r, dome = _cross_section(grid, body, xx, yy, rng)
    cavity_rho = _rho(xx, yy, body.ac, body.bca, body.bcp)
    label = np.empty((grid.z.size, *base.shape), dtype=np.uint8)
    label[:] = base  # the parts that do not change along z, broadcast over slices
    _add_discs(label, grid, body, xx, yy)
    _add_ribs(label, grid, body, cavity_rho, np.abs(np.arctan2(xx, yy)) / np.pi, rng)
    _add_lungs_and_abdomen(label, grid, body, lung_r, dome, cavity_rho, float(rng.uniform(0.92, 0.97)))
    _add_mediastinum(label, grid, body, xx, yy)
    _add_airways(label, grid, body, rng)
    _add_vessel_trees(label, grid, body, rng)
    return label


def _cross_section(
    grid: _Grid, body: _Body, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The axial pattern shared by all slices, each lung's radius field and the diaphragm height."""
    b = body
    half = min(grid.x.size * grid.step[2], grid.y.size * grid.step[1]) / 2
    fov_y = yy - (grid.y[0] + grid.y[-1]) / 2
    base = np.full(xx.shape, _T_AIR, dtype=np.uint8)
    base[xx**2 + fov_y**2 > half**2] = _T_PAD
    base[(yy > b.b_post + 6) & (yy < b.b_post + 14) & (np.abs(xx) < 0.9 * b.a)] = _T_TABLE
    base[_rho(xx, yy, b.a, b.b_ant, b.b_post) < 1] = _T_FAT
    inner = b.fat
    base[_rho(xx, yy, b.a - inner, b.b_ant - inner, b.b_post - inner) < 1] = _T_MUSCLE
    cavity = _rho(xx, yy, b.ac, b.bca, b.bcp) < 1
    base[cavity] = _T_MEDFAT
    # Sternum: marrow inside a cortical shell, just in front of the cavity.
    ster = (np.abs(xx) < 14) & (yy > -b.bca - 12) & (yy < -b.bca + 1)
    base[ster] = _T_BONE
    base[(np.abs(xx) < 11) & (yy > -b.bca - 10) & (yy < -b.bca - 1)] = _T_MARROW
    # Vertebra: body, canal and spinous process; the paraspinal muscles are already around it.
    vb_y = b.bcp - 20
    base[_disc(xx, yy, 0, vb_y, 17)] = _T_BONE
    base[_disc(xx, yy, 0, vb_y, 14.5)] = _T_MARROW
    base[_disc(xx, yy, 0, b.bcp + 8, 13) | ((np.abs(xx) < 4) & (yy > b.bcp) & (yy < b.bcp + 38))] = _T_BONE
    base[_disc(xx, yy, 0, b.bcp + 8, 8)] = _T_CSF
    base[_disc(xx, yy, -2, b.spine_front - 8, 7)] = _T_SOFT  # oesophagus
    # Mediastinal strip: lungs keep out of it, so the two lungs never touch (anterior junction
    # stays a few mm wide) and are told apart by side alone.
    ys = [-b.bca, -0.5 * b.bca, 0.0, b.spine_front, b.bcp]
    strip = np.abs(xx) < np.interp(yy, ys, [4.0, 22.0, 30.0, 28.0, 22.0])
    for cx, cy, r in _mediastinal_columns(b):
        strip |= _disc(xx, yy, cx, cy, r + 1.5)
    lung_r = np.full(xx.shape, np.inf, dtype=np.float32)
    for side in (-1, 1):
        # An ellipse wider than the hemithorax: the cavity wall clips it laterally, the strip
        # medially, and as its scale shrinks towards the apex the lung tapers to a dome.
        cx, ax = side * 0.5 * b.ac, float(rng.uniform(0.56, 0.6)) * b.ac
        cy, ay = 0.1 * b.bcp, 0.55 * (b.bca + b.bcp)
        phi = np.arctan2(yy - cy, xx - cx)
        wobble = (
            1 + 0.04 * np.sin(2 * phi + rng.uniform(0, 6.3)) + 0.03 * np.sin(3 * phi + rng.uniform(0, 6.3))
        )
        r = np.hypot((xx - cx) / ax, (yy - cy) / ay) / wobble
        mine = (np.sign(xx) == side) & cavity & ~strip & (base == _T_MEDFAT)
        lung_r[mine] = r[mine]
    dome = _diaphragm(grid, b, xx, yy, cavity)
    return base, lung_r, dome


def _mediastinal_columns(b: _Body) -> list[tuple[float, float, float]]:
    """(x, y, radius) of tubes that run along z: trachea, ascending and descending aorta, SVC."""
    f = b.spine_front
    return [(0.0, f - 30, 11.0), (-12.0, f - 65, 15.0), (22.0, f - 14, 12.0), (-34.0, f - 58, 10.0)]


def _diaphragm(grid: _Grid, b: _Body, xx: np.ndarray, yy: np.ndarray, cavity: np.ndarray) -> np.ndarray:
    """Height (fraction of the scan) of the diaphragm under each pixel: two domes, the right higher,
    falling to deep posterior costophrenic recesses."""
    sulcus = np.interp(yy, [-b.bca, b.bcp], [0.14, 0.03]).astype(np.float32)
    dome = sulcus.copy()
    for side, top in ((-1, 0.27), (1, 0.23)):
        r2 = ((xx - side * 0.42 * b.ac) / (0.62 * b.ac)) ** 2 + ((yy + 0.1 * b.bca) / (0.95 * b.bcp)) ** 2
        dome = np.maximum(dome, top - (top - 0.03) * r2)
    return np.where(cavity, dome, np.inf).astype(np.float32)


def _add_discs(label: np.ndarray, grid: _Grid, b: _Body, xx: np.ndarray, yy: np.ndarray) -> None:
    disc = _disc(xx, yy, 0, b.bcp - 20, 17)
    for k in np.flatnonzero(np.mod(grid.z, 27.0) < 6.0):  # a 6 mm disc every 27 mm
        label[k][disc] = _T_DISC


def _add_ribs(
    label: np.ndarray, grid: _Grid, b: _Body, rho: np.ndarray, frac: np.ndarray, rng: np.random.Generator
) -> None:
    """Ribs as helical bands in a ring just outside the rib cage (`rho` its normalised radius,
    `frac` 0 at the spine to 1 at the sternum). A rib drops ~90 mm from back to front, so each
    slice cuts it obliquely into arcs, as on a real axial CT."""
    width = 9 / b.ac
    ring = (rho >= _cavity_scale(grid.t).min()) & (rho < 1 + width) & (frac > 0.1) & (frac < 0.8)
    iy, ix = np.nonzero(ring)
    rho, frac = rho[iy, ix], frac[iy, ix]
    phase0 = float(rng.uniform(0, 25))
    for k0 in range(0, grid.z.size, 16):  # chunks keep the (slices × ring pixels) arrays small
        k1 = min(k0 + 16, grid.z.size)
        depth = rho - _cavity_scale(grid.t[k0:k1])[:, None]
        phase = np.mod(grid.z[k0:k1, None] + 90.0 * frac + phase0, 25.0)  # 25 mm from rib to rib
        rib = (phase < 10.0) & (depth >= 0) & (depth < width)
        core = rib & (phase > 2.5) & (phase < 7.5) & (depth > 2 / b.ac) & (depth < 7 / b.ac)
        view = label[k0:k1, iy, ix]
        label[k0:k1, iy, ix] = np.where(core, _T_MARROW, np.where(rib, _T_BONE, view))


def _add_lungs_and_abdomen(
    label: np.ndarray,
    grid: _Grid,
    b: _Body,
    lung_r: np.ndarray,
    dome: np.ndarray,
    cavity_rho: np.ndarray,
    t_apex: float,
) -> None:
    """Per slice, in 2D: muscle where the rib cage has narrowed, liver and spleen under the
    diaphragm, lung above it (2D work per slice is cache-friendly and cheaper than 3D masks)."""
    rows, cols = np.nonzero(np.isfinite(dome))
    ys, xs = slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)
    lung_r, dome, cavity_rho = lung_r[ys, xs], dome[ys, xs], cavity_rho[ys, xs]
    t_full = 0.7
    # Full width below t_full, then the scale falls like sqrt(height): a rounded apex.
    scale = np.sqrt(np.clip((t_apex - grid.t) / (t_apex - t_full), 0, 1)).astype(np.float32)
    for k, (t, s, c) in enumerate(zip(grid.t, scale, _cavity_scale(grid.t), strict=True)):
        view = label[k, ys, xs]
        filler = view == _T_MEDFAT
        if c < 1:
            wall = filler & (cavity_rho >= c)
            view[wall] = _T_MUSCLE
            filler &= ~wall
        below = dome > t
        view[filler & below] = _T_ABDOMEN
        view[filler & ~below & (lung_r < s)] = _T_LUNG
    # Stomach gas under the left dome: air inside the body that is not lung.
    centre = (0.45 * b.ac, -0.1 * b.bca, 0.23 * float(grid.z[-1]) - 25)
    _ellipsoid(label, grid, centre, (28.0, 22.0, 12.0), [(0.0, _T_AIRWAY)], {_T_ABDOMEN})


def _ellipsoid(
    label: np.ndarray,
    grid: _Grid,
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
    ok = _one_of(crop, allowed)
    for extra, value in layers:
        crop[ok & (e < (1 + extra) ** 2)] = value


def _add_mediastinum(label: np.ndarray, grid: _Grid, b: _Body, xx: np.ndarray, yy: np.ndarray) -> None:
    cavity = {_T_MEDFAT, _T_LUNG, _T_ABDOMEN}
    z_at = float(grid.z[-1])
    heart = (0.16 * b.ac, -0.35 * b.bca, 0.33 * z_at)
    axes = (0.42 * b.ac, 0.58 * b.bca, 0.14 * z_at)
    # Pericardial fat around the heart is what shows its outline on a non-contrast CT.
    _ellipsoid(label, grid, heart, axes, [(0.12, _T_MEDFAT), (0.0, _T_SOFT)], cavity)
    spans = [(0.62, 1.01), (0.42, 0.69), (0.0, 0.69), (0.45, 0.85)]  # trachea, aortas, SVC
    for i, ((cx, cy, r), (t0, t1)) in enumerate(zip(_mediastinal_columns(b), spans, strict=True)):
        ks = np.flatnonzero((grid.t >= t0) & (grid.t < t1))
        if ks.size == 0:
            continue
        tube = _disc(xx, yy, cx, cy, r)
        label[ks[0] : ks[-1] + 1, tube] = _T_SOFT
        if i == 0:  # the trachea: air inside a 2 mm wall
            label[ks[0] : ks[-1] + 1, _disc(xx, yy, cx, cy, r - 2)] = _T_AIRWAY
    z_arch = 0.69 * z_at
    for p0, p1 in (
        ((-12, b.spine_front - 65), (18, b.spine_front - 55)),
        ((18, b.spine_front - 55), (22, b.spine_front - 14)),
    ):
        _tube(label, grid, (*p0, z_arch), (*p1, z_arch), 13, 13, [(0, _T_SOFT)], {_T_MEDFAT, _T_LUNG})


def _tube(
    label: np.ndarray,
    grid: _Grid,
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
    ok = _one_of(crop, allowed)
    for extra, value in layers:
        crop[ok & (d2 < (radius + extra) ** 2)] = value


def _tree(
    rng: np.random.Generator,
    start: np.ndarray,
    directions: list[np.ndarray],
    length: float,
    radius: float,
    depth: int,
) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """A small branching tree of segments (p0, p1, r0, r1): each branch forks in two, 20–40° off
    its parent, shorter and thinner, as lobar and segmental bronchi do."""
    segments = []
    stack = [(start, d / np.linalg.norm(d), length, radius, 0) for d in directions]
    while stack:
        p, d, length, r, level = stack.pop()
        end = p + d * length
        segments.append((p, end, r, r * 0.85))
        if level == depth:
            continue
        for _ in range(2):
            perp = rng.normal(size=3)
            perp -= (perp @ d) * d
            child = d + np.tan(np.radians(rng.uniform(20, 40))) * perp / np.linalg.norm(perp)
            stack.append(
                (end, child / np.linalg.norm(child), length * rng.uniform(0.65, 0.8), r * 0.75, level + 1)
            )
    return segments


def _hilum(b: _Body, grid: _Grid, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Carina and the hilum of one side (mm, x y z)."""
    z_carina = 0.62 * float(grid.z[-1])
    carina = np.array([0.0, b.spine_front - 30, z_carina], np.float32)
    drop = 20.0 if side < 0 else 30.0  # the right main bronchus is shorter and steeper
    return carina, np.array([side * 0.3 * b.ac, b.spine_front - 22, z_carina - drop], np.float32)


def _lobar_directions(side: int) -> list[np.ndarray]:
    # Upper lobe (up, lateral), middle/lingula (lateral, anterior), lower lobe (down, two ways).
    return [
        np.array(v, np.float32)
        for v in ((0.35 * side, -0.2, 1), (side, -0.6, 0.1), (0.6 * side, -0.1, -1), (0.4 * side, 0.9, -0.7))
    ]


def _add_airways(label: np.ndarray, grid: _Grid, b: _Body, rng: np.random.Generator) -> None:
    for side in (-1, 1):
        carina, hilum = _hilum(b, grid, side)
        airway_layers = [(2.0, _T_SOFT), (0.0, _T_AIRWAY)]
        _tube(label, grid, tuple(carina), tuple(hilum), 7.5, 6.0, airway_layers, {_T_MEDFAT, _T_LUNG})
        for p0, p1, r0, r1 in _tree(rng, hilum, _lobar_directions(side), 0.12 * b.ac, 4.0, 1):
            _tube(
                label,
                grid,
                tuple(p0),
                tuple(p1),
                r0,
                r1,
                [(1.2, _T_SOFT), (0.0, _T_AIRWAY)],
                {_T_LUNG, _T_MEDFAT},
            )


def _add_vessel_trees(label: np.ndarray, grid: _Grid, b: _Body, rng: np.random.Generator) -> None:
    """Pulmonary vessels: per lung, a tree from the hilum that reaches points spread through the
    whole lung, with radii from how much lung each branch feeds (Murray's law), so vessels are
    thick at the hilum, thin at the periphery and everywhere in between."""
    rim = 0.6 * float(grid.step.min())
    thin = []
    for side in (-1, 1):
        _, hilum = _hilum(b, grid, side)
        start = hilum + np.array([0, -12, 5], np.float32)  # arteries run in front of the bronchi
        targets = _lung_points(label, grid, rng, side, _VESSEL_TARGETS)
        for p0, p1, r, trunk in _space_filling_tree(rng, start, targets):
            if r < 1.5 * float(grid.step.max()):
                thin.append((p0, p1, r))
                continue
            # Trunks may cross hilar fat; branches stay in the lung, whose edge clips them.
            allowed = {_T_LUNG, _T_VESSEL_EDGE} | ({_T_MEDFAT} if trunk else set())
            _tube(label, grid, tuple(p0), tuple(p1), r, r, [(rim, _T_VESSEL_EDGE), (0.0, _T_VESSEL)], allowed)
    _stamp_thin_vessels(label, grid, thin, rim)


def _lung_points(label: np.ndarray, grid: _Grid, rng: np.random.Generator, side: int, n: int) -> np.ndarray:
    """Up to n random points (mm, x y z) in one lung, drawn in vectorised batches."""
    found: list[np.ndarray] = []
    total = 0
    for _batch in range(20):
        idx = [rng.integers(0, size, 20000) for size in label.shape]
        hit = (label[idx[0], idx[1], idx[2]] == _T_LUNG) & (np.sign(grid.x[idx[2]]) == side)
        points = np.stack([grid.x[idx[2][hit]], grid.y[idx[1][hit]], grid.z[idx[0][hit]]], axis=1)
        found.append(points)
        total += len(points)
        if total >= n:
            break
    return np.concatenate(found)[:n].astype(np.float64)


def _space_filling_tree(
    rng: np.random.Generator, root: np.ndarray, targets: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, float, bool]]:
    """Grow a tree from root to every target, nearest targets first: each target joins the
    closest node so far by a slightly wiggly path of <= 10 mm steps. Returns segments
    (p0, p1, radius, is_trunk); radius = 0.5 mm × (targets fed)^0.42, at most 6 mm."""
    order = np.argsort(np.linalg.norm(targets - root, axis=1))
    nodes = np.empty((len(targets) * 12 + 1, 3))
    nodes[0] = root
    parent = [-1]
    fed = np.zeros(len(nodes))
    count = 1
    for target in targets[order]:
        gap = np.linalg.norm(nodes[:count] - target, axis=1)
        here = int(np.argmin(gap))
        steps = min(max(1, int(gap[here] // 10)), 11)
        base, previous = nodes[here].copy(), here
        for s in range(1, steps + 1):
            point = base + (target - base) * s / steps
            if s < steps:
                point += rng.normal(scale=1.5, size=3)
            nodes[count] = point
            parent.append(previous)
            previous, count = count, count + 1
        fed[previous] += 1
    for i in range(count - 1, 0, -1):  # children come after their parents: sum flow to the root
        fed[parent[i]] += fed[i]
    radius = np.minimum(0.5 * np.maximum(fed, 1) ** 0.42, 6.0)
    return [(nodes[parent[i]], nodes[i], float(radius[i]), parent[i] == 0) for i in range(1, count)]


def _stamp_thin_vessels(label: np.ndarray, grid: _Grid, segments: list, rim: float) -> None:
    """Thin vessels, thousands of them, drawn together: points every half voxel along each
    segment, each stamped with a small ball of voxel offsets for its radius. One capsule per call
    would spend most of its time in per-call overhead."""
    step = grid.step[::-1].astype(np.float64)  # x, y, z
    origin = np.array([grid.x[0], grid.y[0], grid.z[0]], np.float64)
    bounds = np.array(label.shape[::-1])
    by_radius: dict[float, list[np.ndarray]] = {}
    for p0, p1, r in segments:
        n = int(np.linalg.norm(p1 - p0) / (0.5 * step.min())) + 2
        points = p0 + np.linspace(0, 1, n)[:, None] * (p1 - p0)
        by_radius.setdefault(round(r * 4) / 4, []).append(points)  # radius to 0.25 mm
    for radius, parts in by_radius.items():
        # Partial volume: a vessel much thinner than a voxel vanishes into the lung around it, one
        # about half a voxel wide only dims its voxels (rim value, no core).
        if radius < 0.3 * step.min():
            continue
        core = _T_VESSEL if radius > 0.45 * step.min() else _T_VESSEL_EDGE
        centres = np.rint((np.concatenate(parts) - origin) / step).astype(np.int32)
        reach = np.ceil((radius + rim) / step).astype(int)
        offsets = np.stack(
            np.meshgrid(*(np.arange(-n, n + 1) for n in reach), indexing="ij"), axis=-1
        ).reshape(-1, 3)
        dist = np.linalg.norm(offsets * step, axis=1)
        for reach_mm, value, allowed in (
            (radius + rim, _T_VESSEL_EDGE, {_T_LUNG}),
            (radius, core, {_T_LUNG, _T_VESSEL_EDGE}),
        ):
            voxels = (centres[:, None, :] + offsets[dist <= max(reach_mm, 0.0)][None]).reshape(-1, 3)
            voxels = voxels[((voxels >= 0) & (voxels < bounds)).all(axis=1)]
            x, y, z = voxels.T
            ok = _one_of(label[z, y, x], allowed)
            label[z[ok], y[ok], x[ok]] = value


# --- lesions -------------------------------------------------------------------------------------


def _add_lesions(
    label: np.ndarray, grid: _Grid, rng: np.random.Generator, count: int | None
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
    plans = [(_T_CONS, float(rng.uniform(5, 14))) for _ in range(n_cons)]
    plans += [(_T_GGO, float(rng.uniform(8, 22))) for _ in range(n_ggo)]
    centres: list[tuple[np.ndarray, float]] = []
    offsets = []
    halo = n_cons > 0 and n_ggo > 0 and rng.random() < 0.5
    for i, (tissue, radius) in enumerate(plans):
        for _attempt in range(20):
            if halo and i == n_cons and centres:
                centre, radius = centres[0][0], centres[0][1] * float(rng.uniform(1.7, 2.2))
            else:
                centre = _lesion_centre(label, grid, rng, centres, radius)
            written = _blob(label, grid, rng, centre, radius, tissue)
            if written is not None:
                centres.append((centre, radius))
                offsets.append(written)
                break
    return offsets


def _lesion_centre(
    label: np.ndarray,
    grid: _Grid,
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
        if label[k, r, c] != _T_LUNG:
            continue
        p = np.array([grid.x[c], grid.y[r], grid.z[k]], np.float32)
        best = p
        spread = 0.8 if attempt < 3000 else 0.0
        if all(np.linalg.norm(p - q) > spread * (radius + rq) for q, rq in taken):
            return p
    if best is None:
        raise ValueError("the phantom has no lung to put lesions in; use more slices")
    return best


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit-variance noise that varies over about a quarter of the box: random weights on a 5×5×5
    grid of Gaussian bumps, summed separably (one small matrix product per axis)."""
    weights = rng.normal(size=(5, 5, 5)).astype(np.float32)
    knots = np.linspace(0, 1, 5, dtype=np.float32)
    bases = [
        np.exp(-(((np.linspace(0, 1, n, dtype=np.float32)[:, None] - knots) / 0.22) ** 2)) for n in shape
    ]
    field = np.einsum("ijk,zi,yj,xk->zyx", weights, *bases, optimize=True)
    return field / max(float(field.std()), 1e-6)


def _blob(
    label: np.ndarray, grid: _Grid, rng: np.random.Generator, centre: np.ndarray, radius: float, tissue: int
) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray] | None:
    """Write one lesion: a randomly rotated ellipsoid whose surface is pushed in and out by smooth
    noise (a lobulated blob), kept to lung voxels that are not lesion yet and to its largest piece."""
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
    smooth = _smooth_noise(rng, crop.shape)
    inside = (rho < 1 + 0.25 * smooth) & _one_of(crop, {_T_LUNG, _T_VESSEL, _T_VESSEL_EDGE})
    pieces, n = ndimage.label(inside)
    if n == 0:
        return None
    inside = pieces == (np.argmax(np.bincount(pieces.ravel())[1:]) + 1)
    if inside.sum() < 5:  # clipped to a sliver by the pleura: try another place
        return None
    crop[inside] = tissue
    # Texture: denser centre, patchy inside, and a per-lesion shift of the mean.
    fade, patchy, shift = (50.0, 30.0, 15.0) if tissue == _T_GGO else (30.0, 20.0, 12.0)
    offset = rng.normal(0, shift) + patchy * smooth[inside] + fade * (0.75 - np.minimum(rho[inside], 1.2))
    return where, inside, np.round(offset).astype(np.int16)


# --- Hounsfield units ----------------------------------------------------------------------------


def _render(label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HU with noise, lesion classes and the lung mask (not yet split by side), slab by slab so
    the temporaries stay small and cache-warm."""
    hu = np.empty(label.shape, dtype=np.int16)
    lesions, lungs = np.empty_like(label), np.empty_like(label)
    step = 8
    for k in range(0, label.shape[0], step):
        lab = label[k : k + step]
        index = lab.astype(np.uint16)
        index <<= _NOISE_BITS
        index |= rng.integers(0, 1 << _NOISE_BITS, size=lab.shape, dtype=np.uint16)
        hu[k : k + step] = _HU_TABLE[index]
        lesions[k : k + step] = _LESION_LUT[lab]
        lungs[k : k + step] = _LUNG_LUT[lab]
    return hu, lesions, lungs


# --- DICOM ---------------------------------------------------------------------------------------


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def _birth_date(patient_id: str, study_date: str) -> str:
    """A stable made-up birth date per patient, so serial studies agree (and date shifting can be
    tested against it)."""
    h = int(hashlib.sha256(patient_id.encode()).hexdigest(), 16)
    year = min(1935 + h % 55, int(study_date[:4]) - 18)
    return f"{year:04d}{1 + (h >> 8) % 12:02d}{1 + (h >> 16) % 28:02d}"


def _age(birth: str, on: str) -> str:
    b, d = (
        dt.date.fromisoformat(f"{birth[:4]}-{birth[4:6]}-{birth[6:]}"),
        dt.date.fromisoformat(f"{on[:4]}-{on[4:6]}-{on[6:]}"),
    )
    return f"{d.year - b.year - ((d.month, d.day) < (b.month, b.day)):03d}Y"


def write_ct_series(
    hu: np.ndarray,
    out_dir: Path,
    *,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    patient_id: str,
    patient_name: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20200315",
    accession: str = "",
    institution_name: str = "Synthetic General Hospital",
    series_description: str = "Chest CT phantom",
    extra_phi: bool = False,
    slice_order: Literal["shuffled", "ascending"] = "shuffled",
    patient_birth_date: str | None = None,
    patient_sex: str | None = None,
    series_number: int = 2,
) -> list[Path]:
    """Write `hu` (int16, (z, y, x), slice 0 at the smallest z) as one CT Image Storage file per
    slice; returns the paths in slice order (ascending z).

    Pixels are stored unsigned as HU + 1024 (RescaleIntercept −1024), as most scanners do.
    InstanceNumber counts from 1 at the smallest z. With slice_order "shuffled" file names are
    hashes that say nothing about order, so a reader must sort by ImagePositionPatient; with
    "ascending" they are IM00001.dcm… in z order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    birth = patient_birth_date or _birth_date(patient_id, study_date)
    hi = int(hu.max()) + 1024 if hu.size else 0
    ds = _ct_template(
        hu.shape,
        spacing,
        study_uid=study_uid,
        series_uid=series_uid,
        patient_id=patient_id,
        patient_name=patient_name,
        birth=birth,
        sex=patient_sex or "MF"[int(hashlib.sha256(patient_id.encode()).hexdigest(), 16) % 2],
        study_date=study_date,
        accession=accession,
        institution_name=institution_name,
        series_description=series_description,
        series_number=series_number,
        bits_stored=12 if hi <= 4095 else 16,
    )
    if extra_phi:
        _add_extra_phi(
            ds,
            patient_id=patient_id,
            patient_name=patient_name,
            birth=birth,
            study_date=study_date,
            accession=accession,
        )
    x0, y0 = _ds(origin[0]), _ds(origin[1])
    paths = []
    for k in range(hu.shape[0]):
        uid = generate_uid(entropy_srcs=[series_uid, str(k)])  # stable per series and slice
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = k + 1
        z = _ds(origin[2] + k * float(spacing[2]))
        ds.ImagePositionPatient = [x0, y0, z]
        ds.SliceLocation = z
        # int32 first: HU above 31743 would wrap in int16; below -1024 cannot be stored unsigned.
        ds.PixelData = np.clip(hu[k].astype(np.int32) + 1024, 0, 65535).astype("<u2").tobytes()
        if slice_order == "shuffled":
            name = hashlib.sha1(uid.encode()).hexdigest()[:20] + ".dcm"
        else:
            name = f"IM{k + 1:05d}.dcm"
        path = out_dir / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _ct_template(
    shape: tuple[int, ...],
    spacing: tuple[float, float, float],
    *,
    study_uid: str,
    series_uid: str,
    patient_id: str,
    patient_name: str,
    birth: str,
    sex: str,
    study_date: str,
    accession: str,
    institution_name: str,
    series_description: str,
    series_number: int,
    bits_stored: int,
) -> FileDataset:
    """Everything that is the same on every slice; built once because deep-copying a dataset
    per slice costs more than writing it."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("phantom.dcm", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    for prefix in ("Study", "Series", "Acquisition", "Content"):
        setattr(ds, f"{prefix}Date", study_date)
        setattr(ds, f"{prefix}Time", "101512")
    ds.AccessionNumber = accession
    ds.Modality = "CT"
    ds.Manufacturer = "CurateCT Synthetic"
    ds.ManufacturerModelName = "Phantom CT 64"
    ds.SoftwareVersions = "1.0"
    ds.InstitutionName = institution_name
    ds.ReferringPhysicianName = "WELBY^MARCUS"
    ds.StudyDescription = "CT CHEST WITHOUT CONTRAST"
    ds.SeriesDescription = series_description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth
    ds.PatientSex = sex
    ds.PatientAge = _age(birth, study_date)
    ds.BodyPartExamined = "CHEST"
    ds.ScanOptions = "HELICAL MODE"
    ds.SliceThickness = _ds(spacing[2])
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = _ds(shape[2] * float(spacing[0]))
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "160"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = 200
    ds.Exposure = 100
    ds.ConvolutionKernel = "LUNG"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = accession[-16:] or "1"
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid, "frame"])
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(shape[1]), int(shape[2])
    ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]  # row spacing (y) first, then column (x)
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter = "-600"
    ds.WindowWidth = "1500"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    return ds


def _add_extra_phi(
    ds: Dataset, *, patient_id: str, patient_name: str, birth: str, study_date: str, accession: str
) -> None:
    """Identifying data in the places real archives leave it, nested and private included, so
    pseudonymisation can be proven to find it all."""
    surname = patient_name.split("^")[0]
    ds.OtherPatientNames = [f"{surname}^MAIDEN"]
    ds.PatientBirthName = f"{surname}^MAIDEN"
    ds.PatientMotherBirthName = "SMITH^MARY"
    ds.PatientAddress = "12 Synthetic Road, Phantomville"
    ds.PatientTelephoneNumbers = ["+1 555 0100"]
    ds.PatientComments = f"Transferred patient {patient_name}, MRN {patient_id}"
    ds.AdditionalPatientHistory = f"{patient_name} has a cough since {study_date}"
    ds.IssuerOfPatientID = "SGH-MRN"
    ds.MedicalRecordLocator = f"MRN-{patient_id}"
    ds.Occupation = "TEACHER"
    ds.OperatorsName = "TECH^ANNA"
    ds.PerformingPhysicianName = "CUTTER^RADIA"
    ds.NameOfPhysiciansReadingStudy = "HOUSE^GREGORY"
    ds.RequestingPhysician = "KILDARE^JAMES"
    ds.PhysiciansOfRecord = "QUINN^MICHAELA"
    ds.ReferringPhysicianAddress = "1 Clinic Street, Phantomville"
    ds.ReferringPhysicianTelephoneNumbers = ["+1 555 0199"]
    ds.InstitutionAddress = "1 Hospital Way, Phantomville"
    ds.InstitutionalDepartmentName = "Radiology"
    ds.StationName = "CTROOM3"
    ds.DeviceSerialNumber = "SN-4711-0815"
    ds.ImageComments = f"Scanned for {patient_name}"
    ds.AcquisitionDateTime = f"{study_date}101512"
    ds.PerformedProcedureStepID = f"PPS{accession or patient_id}"[:16]
    ds.PerformedProcedureStepStartDate = study_date
    ds.PerformedProcedureStepStartTime = "101000"
    ds.PerformedProcedureStepDescription = f"CT chest {patient_name}"
    others = []
    for pid, issuer in ((f"{patient_id}-OLD", "OLDPACS"), (f"NHS{patient_id}", "NHS")):
        item = Dataset()
        item.PatientID, item.IssuerOfPatientID, item.TypeOfPatientID = pid, issuer, "TEXT"
        others.append(item)
    ds.OtherPatientIDsSequence = Sequence(others)
    request = Dataset()
    request.RequestedProcedureID = accession or "RP1"
    request.RequestedProcedureDescription = f"CT chest for {patient_name}"
    request.ScheduledProcedureStepID = "SPS1"
    request.ScheduledProcedureStepStartDate = study_date
    request.ScheduledPerformingPhysicianName = "CUTTER^RADIA"
    request.AccessionNumber = accession
    request.StudyInstanceUID = ds.StudyInstanceUID
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = f"{ds.InstitutionName} RIS, requested by {patient_name}"
    request.IssuerOfAccessionNumberSequence = Sequence([issuer])
    ds.RequestAttributesSequence = Sequence([request])
    # The standard's own record of earlier values: the name, ID and birth date two levels deep.
    previous = Dataset()
    previous.PatientName = patient_name
    previous.PatientID = patient_id
    previous.PatientBirthDate = birth
    original = Dataset()
    original.ModifiedAttributesSequence = Sequence([previous])
    original.AttributeModificationDateTime = f"{study_date}090000"
    original.ModifyingSystem = "SGH RIS"
    original.SourceOfPreviousValues = str(ds.InstitutionName)
    original.ReasonForTheAttributeModification = "COERCE"
    ds.OriginalAttributesSequence = Sequence([original])
    block = ds.private_block(0x0011, "SYNTHGH PACS 1.0", create=True)
    block.add_new(0x01, "LO", patient_name.replace("^", " "))
    block.add_new(0x02, "LO", patient_id)
    block.add_new(0x03, "DA", birth)
    inner = Dataset()
    inner.add_new(0x00110010, "LO", "SYNTHGH PACS 1.0")
    inner.add_new(0x00111001, "PN", patient_name)
    block.add_new(0x04, "SQ", Sequence([inner]))


# --- ground truth, studies, NRRD -----------------------------------------------------------------


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
    )
    save_ground_truth(phantom, folder)
    return folder


def nrrd_to_dicom_series(
    nrrd_path: Path, out_dir: Path, *, patient_id: str, patient_name: str, **options: Any
) -> list[Path]:
    """Write a real CT volume (NRRD, NIfTI… anything SimpleITK reads, in HU) as a DICOM series with
    made-up headers, keeping its origin and spacing; `options` go to write_ct_series."""
    import SimpleITK as sitk  # heavy, and only this helper needs it

    image = sitk.ReadImage(str(nrrd_path))
    if not np.allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-6):
        raise ValueError(f"{nrrd_path}: only axis-aligned volumes (identity direction) are supported")
    hu = sitk.GetArrayFromImage(image).astype(np.int16)  # (z, y, x); index 0 is the origin slice
    sx, sy, sz = (float(v) for v in image.GetSpacing())
    ox, oy, oz = (float(v) for v in image.GetOrigin())  # ITK uses LPS, as DICOM does
    return write_ct_series(
        hu,
        out_dir,
        spacing=(sx, sy, sz),
        origin=(ox, oy, oz),
        patient_id=patient_id,
        patient_name=patient_name,
        **options,
    )

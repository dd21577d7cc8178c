"""The thorax as a tissue label volume: body wall, ribs, spine, mediastinum, heart, great vessels,
two lungs that taper at the apex and sit on diaphragm domes, and (trees.py) airways and vessels.

Array order is (z, y, x) = (slice, row, column); slice 0 is the lung base (feet side). Patient
coordinates are DICOM LPS: +x is the patient's left, +y posterior, +z superior.
"""

from __future__ import annotations

import numpy as np

from demo.phantoms.shapes import Body, Grid, disc, ellipsoid, superellipse_radius, tube
from demo.phantoms.tissues import (
    T_ABDOMEN,
    T_AIR,
    T_AIRWAY,
    T_BONE,
    T_CSF,
    T_DISC,
    T_FAT,
    T_LUNG,
    T_MARROW,
    T_MEDFAT,
    T_MUSCLE,
    T_PAD,
    T_SOFT,
    T_TABLE,
)
from demo.phantoms.trees import add_airways, add_vessel_trees


def draw_body(rng: np.random.Generator) -> Body:
    a = float(rng.uniform(135, 158))
    b_ant, b_post = a * float(rng.uniform(0.62, 0.7)), a * float(rng.uniform(0.78, 0.84))
    fat = float(rng.uniform(8, 24))
    # Chest wall muscle is ~10 mm, the paraspinal muscles behind the ribs ~35 mm.
    return Body(a, b_ant, b_post, fat, a - fat - 10, b_ant - fat - 10, b_post - fat - 35)


def _cavity_scale(t: np.ndarray) -> np.ndarray:
    """How wide the rib cage is at each height: full over the lower half, narrowing to the
    thoracic inlet, where shoulder and neck muscle take the room (the body outline stays)."""
    return np.interp(t, [0.0, 0.45, 1.0], [1.0, 1.0, 0.78]).astype(np.float32)


def build_anatomy(grid: Grid, body: Body, rng: np.random.Generator) -> np.ndarray:
    xx, yy = np.meshgrid(grid.x, grid.y)  # (rows, cols)
    base, lung_r, dome = _cross_section(grid, body, xx, yy, rng)
    cavity_rho = superellipse_radius(xx, yy, body.ac, body.bca, body.bcp)
    label = np.empty((grid.z.size, *base.shape), dtype=np.uint8)
    label[:] = base  # the parts that do not change along z, broadcast over slices
    _add_discs(label, grid, body, xx, yy)
    _add_ribs(label, grid, body, cavity_rho, np.abs(np.arctan2(xx, yy)) / np.pi, rng)
    _add_lungs_and_abdomen(label, grid, body, lung_r, dome, cavity_rho, float(rng.uniform(0.92, 0.97)))
    _add_mediastinum(label, grid, body, xx, yy)
    add_airways(label, grid, body, rng)
    add_vessel_trees(label, grid, body, rng)
    return label


def _cross_section(
    grid: Grid, body: Body, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The axial pattern shared by all slices, each lung's radius field and the diaphragm height."""
    b = body
    half = min(grid.x.size * grid.step[2], grid.y.size * grid.step[1]) / 2
    fov_y = yy - (grid.y[0] + grid.y[-1]) / 2
    base = np.full(xx.shape, T_AIR, dtype=np.uint8)
    base[xx**2 + fov_y**2 > half**2] = T_PAD
    base[(yy > b.b_post + 6) & (yy < b.b_post + 14) & (np.abs(xx) < 0.9 * b.a)] = T_TABLE
    base[superellipse_radius(xx, yy, b.a, b.b_ant, b.b_post) < 1] = T_FAT
    inner = b.fat
    base[superellipse_radius(xx, yy, b.a - inner, b.b_ant - inner, b.b_post - inner) < 1] = T_MUSCLE
    cavity = superellipse_radius(xx, yy, b.ac, b.bca, b.bcp) < 1
    base[cavity] = T_MEDFAT
    # Sternum: marrow inside a cortical shell, just in front of the cavity.
    ster = (np.abs(xx) < 14) & (yy > -b.bca - 12) & (yy < -b.bca + 1)
    base[ster] = T_BONE
    base[(np.abs(xx) < 11) & (yy > -b.bca - 10) & (yy < -b.bca - 1)] = T_MARROW
    # Vertebra: body, canal and spinous process; the paraspinal muscles are already around it.
    vb_y = b.bcp - 20
    base[disc(xx, yy, 0, vb_y, 17)] = T_BONE
    base[disc(xx, yy, 0, vb_y, 14.5)] = T_MARROW
    base[disc(xx, yy, 0, b.bcp + 8, 13) | ((np.abs(xx) < 4) & (yy > b.bcp) & (yy < b.bcp + 38))] = T_BONE
    base[disc(xx, yy, 0, b.bcp + 8, 8)] = T_CSF
    base[disc(xx, yy, -2, b.spine_front - 8, 7)] = T_SOFT  # oesophagus
    # Mediastinal strip: lungs keep out of it, so the two lungs never touch (anterior junction
    # stays a few mm wide) and are told apart by side alone.
    ys = [-b.bca, -0.5 * b.bca, 0.0, b.spine_front, b.bcp]
    strip = np.abs(xx) < np.interp(yy, ys, [4.0, 22.0, 30.0, 28.0, 22.0])
    for cx, cy, r in mediastinal_columns(b):
        strip |= disc(xx, yy, cx, cy, r + 1.5)
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
        mine = (np.sign(xx) == side) & cavity & ~strip & (base == T_MEDFAT)
        lung_r[mine] = r[mine]
    dome = _diaphragm(grid, b, xx, yy, cavity)
    return base, lung_r, dome


def mediastinal_columns(b: Body) -> list[tuple[float, float, float]]:
    """(x, y, radius) of tubes that run along z: trachea, ascending and descending aorta, SVC."""
    f = b.spine_front
    return [(0.0, f - 30, 11.0), (-12.0, f - 65, 15.0), (22.0, f - 14, 12.0), (-34.0, f - 58, 10.0)]


def _diaphragm(grid: Grid, b: Body, xx: np.ndarray, yy: np.ndarray, cavity: np.ndarray) -> np.ndarray:
    """Height (fraction of the scan) of the diaphragm under each pixel: two domes, the right higher,
    falling to deep posterior costophrenic recesses."""
    sulcus = np.interp(yy, [-b.bca, b.bcp], [0.14, 0.03]).astype(np.float32)
    dome = sulcus.copy()
    for side, top in ((-1, 0.27), (1, 0.23)):
        r2 = ((xx - side * 0.42 * b.ac) / (0.62 * b.ac)) ** 2 + ((yy + 0.1 * b.bca) / (0.95 * b.bcp)) ** 2
        dome = np.maximum(dome, top - (top - 0.03) * r2)
    return np.where(cavity, dome, np.inf).astype(np.float32)


def _add_discs(label: np.ndarray, grid: Grid, b: Body, xx: np.ndarray, yy: np.ndarray) -> None:
    where = disc(xx, yy, 0, b.bcp - 20, 17)
    for k in np.flatnonzero(np.mod(grid.z, 27.0) < 6.0):  # a 6 mm disc every 27 mm
        label[k][where] = T_DISC


def _add_ribs(
    label: np.ndarray, grid: Grid, b: Body, rho: np.ndarray, frac: np.ndarray, rng: np.random.Generator
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
        label[k0:k1, iy, ix] = np.where(core, T_MARROW, np.where(rib, T_BONE, view))


def _add_lungs_and_abdomen(
    label: np.ndarray,
    grid: Grid,
    b: Body,
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
        filler = view == T_MEDFAT
        if c < 1:
            wall = filler & (cavity_rho >= c)
            view[wall] = T_MUSCLE
            filler &= ~wall
        below = dome > t
        view[filler & below] = T_ABDOMEN
        view[filler & ~below & (lung_r < s)] = T_LUNG
    # Stomach gas under the left dome: air inside the body that is not lung.
    centre = (0.45 * b.ac, -0.1 * b.bca, 0.23 * float(grid.z[-1]) - 25)
    ellipsoid(label, grid, centre, (28.0, 22.0, 12.0), [(0.0, T_AIRWAY)], {T_ABDOMEN})


def _add_mediastinum(label: np.ndarray, grid: Grid, b: Body, xx: np.ndarray, yy: np.ndarray) -> None:
    cavity = {T_MEDFAT, T_LUNG, T_ABDOMEN}
    z_at = float(grid.z[-1])
    heart = (0.16 * b.ac, -0.35 * b.bca, 0.33 * z_at)
    axes = (0.42 * b.ac, 0.58 * b.bca, 0.14 * z_at)
    # Pericardial fat around the heart is what shows its outline on a non-contrast CT.
    ellipsoid(label, grid, heart, axes, [(0.12, T_MEDFAT), (0.0, T_SOFT)], cavity)
    spans = [(0.62, 1.01), (0.42, 0.69), (0.0, 0.69), (0.45, 0.85)]  # trachea, aortas, SVC
    for i, ((cx, cy, r), (t0, t1)) in enumerate(zip(mediastinal_columns(b), spans, strict=True)):
        ks = np.flatnonzero((grid.t >= t0) & (grid.t < t1))
        if ks.size == 0:
            continue
        column = disc(xx, yy, cx, cy, r)
        label[ks[0] : ks[-1] + 1, column] = T_SOFT
        if i == 0:  # the trachea: air inside a 2 mm wall
            label[ks[0] : ks[-1] + 1, disc(xx, yy, cx, cy, r - 2)] = T_AIRWAY
    z_arch = 0.69 * z_at
    for p0, p1 in (
        ((-12, b.spine_front - 65), (18, b.spine_front - 55)),
        ((18, b.spine_front - 55), (22, b.spine_front - 14)),
    ):
        tube(label, grid, (*p0, z_arch), (*p1, z_arch), 13, 13, [(0, T_SOFT)], {T_MEDFAT, T_LUNG})

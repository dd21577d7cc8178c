"""What each scan-level pattern draws into the lungs, mild to severe.

- COVID-19-like: bilateral, peripheral (subpleural), posterior and lower-zone ground glass;
  crazy paving (thickened septa inside it) from moderate on; consolidation inside the ground
  glass as it progresses.
- Other infection: lobar or segmental consolidation, mostly of one lung, with air bronchograms,
  a ground-glass rim and tree-in-bud nodules.
- No infection: normal lungs with incidental findings — solid nodules, plate-like atelectasis,
  centrilobular emphysema — drawn into the HU but not into the lesion mask.

The patterns overlap on purpose (a COVID case may have consolidation and a nodule, an
infection ground glass, atelectasis is as dense as consolidation), so the scan-level label is
learned from distribution and shape, not from one telltale voxel value.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from demo.phantoms.blobs import blob, smooth_noise
from demo.phantoms.shapes import Grid, ellipsoid, tube
from demo.phantoms.tissues import (
    LUNG_LUT,
    T_ATELECTASIS,
    T_BRONCHOGRAM,
    T_BUD,
    T_CONS,
    T_CRAZY,
    T_EMPHYSEMA,
    T_GGO,
    T_LUNG,
    T_NODULE,
    T_VESSEL,
    T_VESSEL_EDGE,
    one_of,
)
from demo.phantoms.trees import branching_tree

Offsets = list[tuple[tuple[slice, ...], np.ndarray, np.ndarray]]
Score = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
_FREE_LUNG = {T_LUNG, T_VESSEL, T_VESSEL_EDGE}  # lung nothing has been drawn into yet
_LEVEL = {"mild": 0, "moderate": 1, "severe": 2}


def draw_pattern(
    label: np.ndarray, grid: Grid, rng: np.random.Generator, pattern: str, severity: str
) -> Offsets:
    """Draw `pattern` at `severity` into `label`; returns the HU texture offsets of what it drew."""
    level = _LEVEL[severity]
    if pattern == "covid19":
        offsets = _covid(label, grid, rng, level)
    elif pattern == "other_infection":
        offsets = _other_infection(label, grid, rng, level)
    elif pattern == "no_infection":
        return _incidental(label, grid, rng, kinds=1 + level, level=level)
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    if rng.random() < 0.25:  # an incidental finding beside the infection
        offsets += _incidental(label, grid, rng, kinds=1, level=0)
    return offsets


# --- COVID-19-like -------------------------------------------------------------------------------


def _covid(label: np.ndarray, grid: Grid, rng: np.random.Generator, level: int) -> Offsets:
    count = int(rng.integers(*((2, 5), (4, 8), (8, 13))[level]))
    r_lo, r_hi = ((10, 16), (14, 23), (18, 30))[level]
    crazy_p, cons_p = (0.0, 0.5, 0.8)[level], (0.0, 0.35, 0.7)[level]
    depth = (12.0, 16.0, 24.0)[level]  # subpleural at first, spreading inwards as it worsens
    side = int(rng.choice([-1, 1]))
    offsets: Offsets = []
    for i in range(count):
        s = side if i % 2 == 0 else -side  # alternate lungs: bilateral from the second lesion on
        radius = float(rng.uniform(r_lo, r_hi))
        centre = _sample(label, grid, rng, s, _covid_score)
        if centre is None:
            continue
        if rng.random() < cons_p:  # consolidation in the dependent part of the ground glass
            core = centre + np.array([0, 0.25 * radius, 0], np.float32)
            if LUNG_LUT[label[_index(grid, core)]]:
                offsets += [w for w in [blob(label, grid, rng, core, 0.45 * radius, T_CONS)] if w]
        written = blob(label, grid, rng, centre, radius, T_GGO, max_depth_mm=depth)
        if written is None:
            continue
        offsets.append(written)
        if rng.random() < crazy_p:
            _crazy_paving(label, grid, rng, written[0], written[1])
    return offsets


def _covid_score(label: np.ndarray, grid: Grid, idx: np.ndarray, side: np.ndarray) -> np.ndarray:
    k, r, _ = idx
    depth = _pleural_depth(label, grid, idx, side)
    posterior = 1 / (1 + np.exp(-(grid.y[r] - 10.0) / 12.0))  # the lungs' centre is ~10 mm back
    return np.exp(-depth / 8.0) * (0.15 + 0.85 * posterior) * (0.05 + 0.95 * (1 - grid.t[k])) ** 3


def _crazy_paving(
    label: np.ndarray, grid: Grid, rng: np.random.Generator, where: tuple[slice, ...], inside: np.ndarray
) -> None:
    """Thickened interlobular septa over the ground glass: the faces of a randomly turned lattice
    of ~1 cm cells (secondary lobules), one voxel thick."""
    pitch = max(10.0, 3.5 * float(grid.step[1:].max()))
    half = 0.5 * float(grid.step[1:].max())
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0].astype(np.float32)
    crop = label[where]
    k, r, c = np.nonzero(inside & (crop == T_GGO))
    coords = (grid.x[where[2]][c], grid.y[where[1]][r], grid.z[where[0]][k])
    near = np.zeros(k.shape, dtype=bool)
    for j in range(3):
        u = sum(coords[a] * rot[a, j] for a in range(3)) + rng.uniform(0, pitch)
        frac = np.mod(u, pitch)
        near |= np.minimum(frac, pitch - frac) < half
    crop[k[near], r[near], c[near]] = T_CRAZY


# --- other infection -----------------------------------------------------------------------------


def _other_infection(label: np.ndarray, grid: Grid, rng: np.random.Generator, level: int) -> Offsets:
    side = int(rng.choice([-1, 1]))
    offsets = _focus(label, grid, rng, side, level)
    if level == 2 and rng.random() < 0.35:  # a smaller focus in the other lung
        offsets += _focus(label, grid, rng, -side, 0)
    for _ in range(int(rng.random() < (0.5, 0.7, 0.85)[level]) + int(level == 2)):
        _tree_in_bud(label, grid, rng, side)
    return offsets


def _focus(label: np.ndarray, grid: Grid, rng: np.random.Generator, side: int, level: int) -> Offsets:
    """One segmental (mild, moderate) or lobar (severe) consolidation with air bronchograms and,
    from moderate on, a rim of ground glass."""
    lobe = str(rng.choice(["lower", "upper", "middle"], p=[0.5, 0.3, 0.2]))
    u_of = _depth_axis(label, grid, side)
    in_lobe = _lobe_test(lobe, u_of)
    centre = _sample(label, grid, rng, side, lambda lab, g, idx, s: in_lobe(g.t[idx[0]], idx[1]) + 0.02)
    if centre is None:
        return []
    radius = float(rng.uniform(*((18, 26), (28, 40), (60, 90))[level]))
    where = tuple(
        grid.index_range(ax, float(centre[2 - ax] - radius * 1.3), float(centre[2 - ax] + radius * 1.3))
        for ax in range(3)
    )
    crop = label[where]
    dz = (grid.z[where[0]] - centre[2])[:, None, None]
    dy = (grid.y[where[1]] - centre[1])[None, :, None]
    dx = (grid.x[where[2]] - centre[0])[None, None, :]
    smooth = smooth_noise(rng, crop.shape)
    rho = np.sqrt(dx**2 + dy**2 + dz**2) / radius
    rows = np.arange(where[1].start, where[1].stop)
    lobe_mask = in_lobe(grid.t[where[0]][:, None, None], rows[None, :, None])
    same_side = (np.sign(grid.x[where[2]]) == side)[None, None, :]
    region = (rho < 1 + 0.2 * smooth) & lobe_mask & same_side & one_of(crop, _FREE_LUNG)
    pieces, n = ndimage.label(region)
    if n == 0:
        return []
    region = pieces == (np.argmax(np.bincount(pieces.ravel())[1:]) + 1)
    if region.sum() < 5:
        return []
    crop[region] = T_CONS
    offset = rng.normal(0, 12) + 20.0 * smooth[region] + 25.0 * (0.75 - np.minimum(rho[region], 1.2))
    out: Offsets = [(where, region, np.round(offset).astype(np.int16))]
    _air_bronchograms(label, grid, rng, centre, radius, side)
    if level >= 1:
        rim = ndimage.binary_dilation(crop == T_CONS, iterations=1) & one_of(crop, _FREE_LUNG) & same_side
        crop[rim] = T_GGO
    return out


def _depth_axis(label: np.ndarray, grid: Grid, side: int) -> Callable[[np.ndarray], np.ndarray]:
    """Row index -> -1 (front of this lung) .. +1 (back), measured on a slice through its middle."""
    k = int(np.argmin(np.abs(grid.t - 0.4)))
    cols = np.sign(grid.x) == side
    rows = np.flatnonzero(LUNG_LUT[label[k][:, cols]].any(axis=1))
    lo, hi = (rows.min(), rows.max()) if rows.size else (0, label.shape[1] - 1)
    return lambda r: (np.asarray(r, np.float32) - lo) / max(hi - lo, 1) * 2 - 1


def _lobe_test(
    lobe: str, u_of: Callable[[np.ndarray], np.ndarray]
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A lobe as a region of (height t, front-back u): the oblique fissure climbs from the front
    of the base to the back of the upper chest; the middle lobe (lingula) lies in front above it."""

    def test(t: np.ndarray, rows: np.ndarray) -> np.ndarray:
        u = u_of(rows)
        below = t < 0.40 + 0.22 * u
        middle = ~below & (t <= 0.58) & (u <= 0.1)
        return {"lower": below, "middle": middle, "upper": ~below & ~middle}[lobe]

    return test


def _air_bronchograms(
    label: np.ndarray, grid: Grid, rng: np.random.Generator, centre: np.ndarray, radius: float, side: int
) -> None:
    """Bronchi that stay air-filled inside the consolidation, branching towards its periphery."""
    px = float(grid.step[1:].max())
    towards = np.array([side * 0.8, rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5)], np.float64)
    start = centre.astype(np.float64) - towards / np.linalg.norm(towards) * 0.6 * radius
    for p0, p1, r0, r1 in branching_tree(rng, start, [towards], 0.5 * radius, 2.2, 2):
        r0, r1 = max(r0, 0.9 * px), max(r1, 0.8 * px)  # at least ~2 voxels wide, or the kernel hides it
        tube(label, grid, tuple(p0), tuple(p1), r0, r1, [(0.0, T_BRONCHOGRAM)], {T_CONS})


def _tree_in_bud(label: np.ndarray, grid: Grid, rng: np.random.Generator, side: int) -> None:
    """A cluster of small branching centrilobular nodules near the pleura (infectious bronchiolitis)."""
    start = _sample(
        label, grid, rng, side, lambda lab, g, idx, s: np.exp(-_pleural_depth(lab, g, idx, s) / 12.0)
    )
    if start is None:
        return
    px = float(grid.step[1:].max())
    direction = rng.normal(size=3)
    for p0, p1, r0, _ in branching_tree(rng, start.astype(np.float64), [direction], 7.0, 1.0, 2):
        tube(
            label,
            grid,
            tuple(p0),
            tuple(p1),
            max(r0, 0.5 * px),
            max(r0, 0.5 * px),
            [(0.0, T_BUD)],
            _FREE_LUNG,
        )
        bud = max(2.0, 0.7 * px)
        ellipsoid(label, grid, tuple(p1), (bud, bud, bud), [(0.0, T_BUD)], _FREE_LUNG)


# --- incidental findings -------------------------------------------------------------------------


def _incidental(
    label: np.ndarray, grid: Grid, rng: np.random.Generator, *, kinds: int, level: int
) -> Offsets:
    """`kinds` of nodules, atelectasis and emphysema (none of them a lesion class)."""
    offsets: Offsets = []
    for kind in rng.permutation(["nodule", "atelectasis", "emphysema"])[:kinds]:
        if kind == "nodule":
            for _ in range(int(rng.integers(1, 2 + level))):
                centre = _sample(label, grid, rng, int(rng.choice([-1, 1])), _anywhere)
                radius = max(float(rng.uniform(2.5, 6.0)), 0.8 * float(grid.step[1:].max()))
                if centre is not None:
                    offsets += [w for w in [blob(label, grid, rng, centre, radius, T_NODULE)] if w]
        elif kind == "atelectasis":
            for _ in range(1 + level // 2):
                _atelectasis(label, grid, rng, level)
        else:
            _emphysema(label, grid, rng, level)
    return offsets


def _atelectasis(label: np.ndarray, grid: Grid, rng: np.random.Generator, level: int) -> None:
    """A plate of collapsed lung, a few mm thick and a few cm wide, low and at the back."""
    side = int(rng.choice([-1, 1]))
    centre = _sample(label, grid, rng, side, _basal_posterior)
    if centre is None:
        return
    length, width = float(rng.uniform(18, 30)) * (1 + 0.3 * level), float(rng.uniform(10, 20))
    thick = max(2.5, 1.1 * float(grid.step.max()))
    tilt = rng.normal(scale=0.25, size=3)
    normal = np.array([0, 0, 1.0]) + tilt  # roughly horizontal plates, as the dependent lung collapses
    rot = np.linalg.qr(np.stack([normal, rng.normal(size=3), rng.normal(size=3)], axis=1))[0]
    reach = length * 1.1
    where = tuple(
        grid.index_range(ax, float(centre[2 - ax] - reach), float(centre[2 - ax] + reach)) for ax in range(3)
    )
    crop = label[where]
    d = [
        (grid.x[where[2]] - centre[0])[None, None, :],
        (grid.y[where[1]] - centre[1])[None, :, None],
        (grid.z[where[0]] - centre[2])[:, None, None],
    ]
    axes = (thick, length, width)
    rho2 = sum(((d[0] * rot[0, j] + d[1] * rot[1, j] + d[2] * rot[2, j]) / axes[j]) ** 2 for j in range(3))
    crop[(rho2 < 1) & one_of(crop, _FREE_LUNG)] = T_ATELECTASIS


def _emphysema(label: np.ndarray, grid: Grid, rng: np.random.Generator, level: int) -> None:
    """Centrilobular emphysema: small holes of near-air density, in the upper zones."""
    px = float(grid.step[1:].max())
    for _ in range((20, 50, 110)[level]):
        centre = _sample(label, grid, rng, int(rng.choice([-1, 1])), _upper, tries=2)
        if centre is None:
            continue
        r = max(float(rng.uniform(2.0, 5.0)), 0.6 * px)
        ellipsoid(label, grid, tuple(centre), (r, r, r), [(0.0, T_EMPHYSEMA)], {T_LUNG})


# --- where things go -----------------------------------------------------------------------------


def _anywhere(label: np.ndarray, grid: Grid, idx: np.ndarray, side: np.ndarray) -> np.ndarray:
    return np.ones(idx.shape[1])


def _upper(label: np.ndarray, grid: Grid, idx: np.ndarray, side: np.ndarray) -> np.ndarray:
    return (grid.t[idx[0]] > 0.5).astype(np.float64)


def _basal_posterior(label: np.ndarray, grid: Grid, idx: np.ndarray, side: np.ndarray) -> np.ndarray:
    k, r, _ = idx
    return (grid.t[k] < 0.4) * (1 / (1 + np.exp(-grid.y[r] / 15.0)))


def _index(grid: Grid, p: np.ndarray) -> tuple[int, int, int]:
    """The voxel (k, r, c) nearest to point p (mm, x y z), clipped into the volume."""
    c = int(np.clip(np.rint((p[0] - grid.x[0]) / grid.step[2]), 0, grid.x.size - 1))
    r = int(np.clip(np.rint((p[1] - grid.y[0]) / grid.step[1]), 0, grid.y.size - 1))
    k = int(np.clip(np.rint((p[2] - grid.z[0]) / grid.step[0]), 0, grid.z.size - 1))
    return k, r, c


def _sample(
    label: np.ndarray, grid: Grid, rng: np.random.Generator, side: int, score: Score, tries: int = 12
) -> np.ndarray | None:
    """A free lung voxel of one side (mm, x y z), accepted with probability score(...): rejection
    sampling in vectorised batches (a list of all lung voxels would cost GBs on large grids)."""
    ks = np.flatnonzero((grid.t > 0.06) & (grid.t < 0.9))
    if ks.size == 0:
        ks = np.arange(grid.t.size)
    for _ in range(tries):
        idx = np.stack(
            [
                rng.choice(ks, 2048),
                rng.integers(0, label.shape[1], 2048),
                rng.integers(0, label.shape[2], 2048),
            ]
        )
        ok = one_of(label[idx[0], idx[1], idx[2]], {T_LUNG}) & (np.sign(grid.x[idx[2]]) == side)
        idx = idx[:, ok]
        if idx.shape[1] == 0:
            continue
        p = score(label, grid, idx, np.full(idx.shape[1], side))
        hit = np.flatnonzero(rng.random(idx.shape[1]) < p)
        if hit.size:
            k, r, c = idx[:, hit[0]]
            return np.array([grid.x[c], grid.y[r], grid.z[k]], np.float32)
    return None


def _pleural_depth(
    label: np.ndarray, grid: Grid, idx: np.ndarray, side: np.ndarray, reach_mm: float = 40.0
) -> np.ndarray:
    """How far (mm) each voxel lies from the costal pleura: the first non-lung voxel walking out
    laterally, forwards or backwards in its slice (the mediastinal side does not count)."""
    k, r, c = idx
    px = float(grid.step[1:].max())
    steps = max(1, int(reach_mm / px))
    depth = np.full(k.shape, reach_mm, dtype=np.float64)
    for dr, dc in ((0, 1), (1, 0), (-1, 0), (1, 1), (-1, 1)):
        found = np.zeros(k.shape, dtype=bool)
        for s in range(1, steps + 1):
            rr = np.clip(r + dr * s, 0, label.shape[1] - 1)
            cc = np.clip(c + dc * side * s, 0, label.shape[2] - 1)
            out = ~found & (LUNG_LUT[label[k, rr, cc]] == 0)
            depth[out] = np.minimum(depth[out], s * px * np.hypot(dr, dc))
            found |= out
    return depth

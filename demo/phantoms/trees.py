"""Airway and pulmonary vessel trees, drawn into the lungs of a tissue label volume."""

from __future__ import annotations

import numpy as np

from demo.phantoms.shapes import Body, Grid, tube
from demo.phantoms.tissues import T_AIRWAY, T_LUNG, T_MEDFAT, T_SOFT, T_VESSEL, T_VESSEL_EDGE, one_of

_VESSEL_TARGETS = 1200  # points per lung the vessel tree must reach


def branching_tree(
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


def _hilum(b: Body, grid: Grid, side: int) -> tuple[np.ndarray, np.ndarray]:
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


def add_airways(label: np.ndarray, grid: Grid, b: Body, rng: np.random.Generator) -> None:
    for side in (-1, 1):
        carina, hilum = _hilum(b, grid, side)
        airway_layers = [(2.0, T_SOFT), (0.0, T_AIRWAY)]
        tube(label, grid, tuple(carina), tuple(hilum), 7.5, 6.0, airway_layers, {T_MEDFAT, T_LUNG})
        for p0, p1, r0, r1 in branching_tree(rng, hilum, _lobar_directions(side), 0.12 * b.ac, 4.0, 1):
            tube(
                label,
                grid,
                tuple(p0),
                tuple(p1),
                r0,
                r1,
                [(1.2, T_SOFT), (0.0, T_AIRWAY)],
                {T_LUNG, T_MEDFAT},
            )


def add_vessel_trees(label: np.ndarray, grid: Grid, b: Body, rng: np.random.Generator) -> None:
    """Pulmonary vessels: per lung, a tree from the hilum that reaches points spread through the
    whole lung, with radii from how much lung each branch feeds (Murray's law), so vessels are
    thick at the hilum, thin at the periphery and everywhere in between."""
    rim = 0.6 * float(grid.step.min())
    thin = []
    for side in (-1, 1):
        _, hilum = _hilum(b, grid, side)
        start = hilum + np.array([0, -12, 5], np.float32)  # arteries run in front of the bronchi
        targets = lung_points(label, grid, rng, side, _VESSEL_TARGETS)
        for p0, p1, r, trunk in _space_filling_tree(rng, start, targets):
            if r < 1.5 * float(grid.step.max()):
                thin.append((p0, p1, r))
                continue
            # Trunks may cross hilar fat; branches stay in the lung, whose edge clips them.
            allowed = {T_LUNG, T_VESSEL_EDGE} | ({T_MEDFAT} if trunk else set())
            tube(label, grid, tuple(p0), tuple(p1), r, r, [(rim, T_VESSEL_EDGE), (0.0, T_VESSEL)], allowed)
    _stamp_thin_vessels(label, grid, thin, rim)


def lung_points(label: np.ndarray, grid: Grid, rng: np.random.Generator, side: int, n: int) -> np.ndarray:
    """Up to n random points (mm, x y z) in one lung, drawn in vectorised batches."""
    found: list[np.ndarray] = []
    total = 0
    for _batch in range(20):
        idx = [rng.integers(0, size, 20000) for size in label.shape]
        hit = (label[idx[0], idx[1], idx[2]] == T_LUNG) & (np.sign(grid.x[idx[2]]) == side)
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


def _stamp_thin_vessels(label: np.ndarray, grid: Grid, segments: list, rim: float) -> None:
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
        core = T_VESSEL if radius > 0.45 * step.min() else T_VESSEL_EDGE
        centres = np.rint((np.concatenate(parts) - origin) / step).astype(np.int32)
        reach = np.ceil((radius + rim) / step).astype(int)
        offsets = np.stack(
            np.meshgrid(*(np.arange(-n, n + 1) for n in reach), indexing="ij"), axis=-1
        ).reshape(-1, 3)
        dist = np.linalg.norm(offsets * step, axis=1)
        for reach_mm, value, allowed in (
            (radius + rim, T_VESSEL_EDGE, {T_LUNG}),
            (radius, core, {T_LUNG, T_VESSEL_EDGE}),
        ):
            voxels = (centres[:, None, :] + offsets[dist <= max(reach_mm, 0.0)][None]).reshape(-1, 3)
            voxels = voxels[((voxels >= 0) & (voxels < bounds)).all(axis=1)]
            x, y, z = voxels.T
            ok = one_of(label[z, y, x], allowed)
            label[z[ok], y[ok], x[ok]] = value

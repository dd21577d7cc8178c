"""make_phantom: a chest CT phantom and its ground truth, built from the parts of this package."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from demo.phantoms.anatomy import build_anatomy, draw_body
from demo.phantoms.blobs import add_lesions
from demo.phantoms.scanner import ScannerStyle, render_plain
from demo.phantoms.shapes import Body, Grid, Vec3
from demo.phantoms.tissues import LEFT_LUNG


@dataclass
class Phantom:
    """A synthetic CT volume and its ground truth, all (z, y, x) with slice 0 at the smallest z."""

    hu: np.ndarray  # int16 Hounsfield units
    lesions: np.ndarray  # uint8: 0 background, 1 ground-glass opacity, 2 consolidation
    lungs: np.ndarray  # uint8: 0 outside, 1 right lung, 2 left lung (vessels and lesions included)
    spacing: Vec3  # mm: (column spacing x, row spacing y, slice spacing z)
    origin: Vec3  # mm: patient position (LPS) of voxel [0, 0, 0]
    style: ScannerStyle | None = None  # the scanner style it was rendered with (None: plain)
    # uint8, cohort cases only: incidental findings that are not lesions (tissues.NODULE,
    # ATELECTASIS, EMPHYSEMA); None for make_phantom's phantoms
    findings: np.ndarray | None = None


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
    body = draw_body(rng_anat)
    if spacing is None:
        pixel = max(2 * body.a / (0.8 * cols), (body.b_ant + body.b_post) / (0.75 * rows))
        spacing = (round(pixel, 4), round(pixel, 4), default_slice_step(slices))
    grid = phantom_grid(body, (slices, rows, cols), spacing)
    label = build_anatomy(grid, body, rng_anat)
    lesion_offsets = add_lesions(label, grid, rng_les, lesions)
    hu, lesion_mask, lung_mask = render_plain(label, rng_noise)
    for where, mask, offset in lesion_offsets:
        hu[where][mask] += offset
    return assemble(grid, spacing, hu, lesion_mask, lung_mask)


def default_slice_step(slices: int) -> float:
    """Slices spaced so the scan spans ~320 mm (0.625–5 mm)."""
    return round(float(np.clip(320 / slices, 0.625, 5.0)), 4)


def phantom_grid(body: Body, shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> Grid:
    """Voxel centres in mm. The body's centre line sits in the middle column and a little above
    the middle row, so the couch fits underneath."""
    slices, rows, cols = shape
    sx, sy, sz = (float(v) for v in spacing)
    x = (np.arange(cols, dtype=np.float32) - (cols - 1) / 2) * sx
    y = (np.arange(rows, dtype=np.float32) - rows * 0.5) * sy + (body.b_post - body.b_ant) / 2 + 8
    z = np.arange(slices, dtype=np.float32) * sz
    return Grid(x, y, z, z / max(z[-1], 1e-3), np.array([sz, sy, sx], dtype=np.float32))


def assemble(
    grid: Grid,
    spacing: tuple[float, float, float],
    hu: np.ndarray,
    lesions: np.ndarray,
    lungs: np.ndarray,
    style: ScannerStyle | None = None,
    findings: np.ndarray | None = None,
) -> Phantom:
    """The Phantom of rendered arrays: lungs split by side, the origin placed."""
    # The mediastinal strip keeps each lung on its own side of the midline.
    lungs[:, :, int(np.searchsorted(grid.x, 0)) :] *= LEFT_LUNG
    x0, y0, z_top = float(grid.x[0]), float(grid.y[0]), float(grid.z[-1])
    origin = (round(x0, 3), round(y0, 3), round(-z_top - 60.0, 3))
    sx, sy, sz = (float(v) for v in spacing)
    return Phantom(hu, lesions, lungs, (sx, sy, sz), origin, style, findings)

"""Check a series: one geometry, sorted along the slice normal, no duplicates, gaps flagged."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from platform_core.ingest.reader import SliceRecord

# Orientation cosines and spacings from different scanners differ in the last digits.
ORIENTATION_TOL = 1e-3
SPACING_TOL_MM = 1e-3
# A step this much larger than the series' usual step is a gap (a missing slice or more).
GAP_FACTOR = 1.5


class SeriesRejected(ValueError):
    pass


@dataclass
class SortedSeries:
    slices: list[SliceRecord]
    spacing: tuple[float, float, float]  # x (column), y (row), z (slice step) in mm
    origin: tuple[float, float, float]
    direction: list[float]  # 3×3 row-major: column (x), row (y) and slice (z) directions
    gaps: list[dict]


def sort_and_check(records: list[SliceRecord]) -> SortedSeries:
    if len(records) < 2:
        raise SeriesRejected("a series needs at least 2 slices to form a volume")
    first = records[0]
    for r in records[1:]:
        if (r.rows, r.columns) != (first.rows, first.columns):
            raise SeriesRejected(
                f"mixed geometry: {r.name} is {r.rows}×{r.columns}, {first.name} is {first.rows}×{first.columns}"
            )
        if np.max(np.abs(np.subtract(r.pixel_spacing, first.pixel_spacing))) > SPACING_TOL_MM:
            raise SeriesRejected(
                f"mixed geometry: pixel spacing {r.pixel_spacing} in {r.name} differs from {first.pixel_spacing}"
            )
        if np.max(np.abs(np.subtract(r.orientation, first.orientation))) > ORIENTATION_TOL:
            raise SeriesRejected(
                f"mixed geometry: {r.name} has a different orientation; re-export one series"
            )
    normal = first.normal
    if np.linalg.norm(normal) < 0.99:
        raise SeriesRejected("image orientation is not two orthonormal directions")
    ordered = sorted(records, key=lambda r: float(np.dot(r.position, normal)))
    positions = np.array([np.dot(r.position, normal) for r in ordered])
    steps = np.diff(positions)
    dup = np.flatnonzero(steps < 1e-3)
    if dup.size:
        a, b = ordered[dup[0]], ordered[dup[0] + 1]
        raise SeriesRejected(
            f"two slices at the same position ({a.name}, {b.name}): mixed series or duplicates with new UIDs"
        )
    step = float(np.median(steps))
    gaps = [
        {"after_index": int(i), "step_mm": round(float(steps[i]), 3), "expected_mm": round(step, 3)}
        for i in np.flatnonzero(steps > GAP_FACTOR * step)
    ]
    row_dir = list(first.orientation[:3])  # direction along a row: increasing column index (x)
    col_dir = list(first.orientation[3:])  # direction down a column: increasing row index (y)
    return SortedSeries(
        slices=ordered,
        spacing=(first.pixel_spacing[1], first.pixel_spacing[0], step),
        origin=tuple(float(v) for v in ordered[0].position),  # type: ignore[arg-type]
        direction=row_dir + col_dir + [float(v) for v in normal],
        gaps=gaps,
    )

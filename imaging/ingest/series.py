"""Check a series: one geometry, sorted along the slice normal, no duplicates, no gaps.

A gap (a missing slice or more) refuses the series unless the data manager imports it anyway;
then the gap stays in the geometry: `positions` holds every slice's place along the normal, and
the z spacing is the series' regular step, never a median that would smear the hole over the
volume (4 slices at 0, 2.5, 7.5 mm are not "3 slices 3.75 mm apart").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imaging.ingest.reader import SliceRecord

# Orientation cosines and spacings from different scanners differ in the last digits.
ORIENTATION_TOL = 1e-3
SPACING_TOL_MM = 1e-3
# A step this much larger than the expected step is a gap (a missing slice or more). The
# expected step is the smallest of the steps between positions and the spacing the headers
# state (SpacingBetweenSlices, SliceThickness): missing slices only ever make steps longer, so
# the median of a short series with a hole is no yardstick.
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
    # Each slice's distance from the first along the normal (mm), kept when there are gaps:
    # then spacing[2] alone does not place the slices.
    positions: list[float]


def sort_and_check(records: list[SliceRecord], *, allow_gaps: bool = False) -> SortedSeries:
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
    expected = _expected_step(first, steps)
    regular = steps[steps <= GAP_FACTOR * expected + SPACING_TOL_MM]
    step = float(np.median(regular if regular.size else steps))
    gaps = [
        {
            "after_index": int(i),
            "step_mm": round(float(steps[i]), 3),
            "expected_mm": round(expected, 3),
        }
        for i in np.flatnonzero(steps > GAP_FACTOR * expected + SPACING_TOL_MM)
    ]
    if gaps and not allow_gaps:
        raise SeriesRejected(_gap_reason(gaps, ordered))
    row_dir = list(first.orientation[:3])  # direction along a row: increasing column index (x)
    col_dir = list(first.orientation[3:])  # direction down a column: increasing row index (y)
    return SortedSeries(
        slices=ordered,
        spacing=(first.pixel_spacing[1], first.pixel_spacing[0], step),
        origin=tuple(float(v) for v in ordered[0].position),  # type: ignore[arg-type]
        direction=row_dir + col_dir + [float(v) for v in normal],
        gaps=gaps,
        positions=[round(float(p - positions[0]), 4) for p in positions] if gaps else [],
    )


def _expected_step(first: SliceRecord, steps: np.ndarray) -> float:
    stated = [v for v in (first.spacing_between_slices, first.slice_thickness) if v]
    return float(min([float(steps.min()), *stated]))


def _gap_reason(gaps: list[dict], ordered: list[SliceRecord]) -> str:
    # File names go into the job's report only: the scan's gaps travel into exports, and a
    # name as uploaded may identify the patient.
    g = gaps[0]
    before, after = ordered[g["after_index"]].name, ordered[g["after_index"] + 1].name
    more = f" (and {len(gaps) - 1} more gap(s))" if len(gaps) > 1 else ""
    return (
        f"slice(s) missing: between {before} and {after} the slices are "
        f"{g['step_mm']} mm apart where the series' spacing is {g['expected_mm']} mm{more}; "
        "the series is refused whole — send the complete series, or import it anyway "
        "(import_incomplete) to keep it with the gap recorded"
    )

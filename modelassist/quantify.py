"""Quantification report of one scan (DESIGN step 10, after Pan et al., Sci Rep 2021).

Lung volume, lesion volume, percent of lung involved, volumes per lesion class, and the CT
severity score: 0-5 per region from the percent of that region involved, summed over the
regions (five lobes: 0-25). Pure numpy; no Django here.

Conventions: arrays are (z, y, x); spacing is (x, y, z) mm. Lung labels 1 right, 2 left.
All volumes come from integer voxel counts times the voxel volume, so a report is exact
and reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

Spacing = Sequence[float]  # (x, y, z) mm

DEFAULT_LESION_CLASSES: Mapping[int, str] = {
    1: "ground-glass opacity",
    2: "consolidation",
    3: "other opacity",
}
OTHER_OPACITY = 3
# Pan et al. / DESIGN step 3: consolidation from -350 HU. Lesions of unknown class are
# split at this value into ground-glass-like and consolidation-like volumes.
CONSOLIDATION_MIN_HU = -350

# Lobe labels as the common lung-lobe models write them (lungmask "LTRCLobes").
LOBE_NAMES: Mapping[int, str] = {
    1: "left upper lobe",
    2: "left lower lobe",
    3: "right upper lobe",
    4: "right middle lobe",
    5: "right lower lobe",
}
# Without lobe labels, each lung is cut into cranio-caudal thirds. These are NOT lobes:
# the fissures are oblique, so the name says what the region really is.
ZONE_NAMES: Mapping[int, str] = {
    1: "upper third of the right lung",
    2: "middle third of the right lung",
    3: "lower third of the right lung",
    4: "upper third of the left lung",
    5: "middle third of the left lung",
    6: "lower third of the left lung",
}
ZONE_NOTE = (
    "Zones are the upper, middle and lower thirds of each lung's cranio-caudal extent, "
    "not anatomical lobes; the score is 0-5 per zone, 0-30 in total."
)
LOBE_NOTE = "Regions are the five anatomical lobes; the score is 0-5 per lobe, 0-25 in total."
MAX_REGION_SCORE = 5


def severity_band(percent: float) -> int:
    """CT severity score of one region from the percent of it involved (Pan et al.).

    Bands as published: 0 none, 1 < 5 %, 2 5-25 %, 3 26-50 %, 4 51-75 %, 5 > 75 %. The
    published bands are written for whole percents; volumes give continuous percents, so
    the edges are read as 5, 25, 50 and 75 with the upper edge inside the lower band:
    0 when exactly 0; 1 when 0 < p < 5; 2 when 5 <= p <= 25; 3 when 25 < p <= 50;
    4 when 50 < p <= 75; 5 when p > 75. So 5.0 -> 2, 25.0 -> 2, 25.01 -> 3, 50.0 -> 3,
    75.0 -> 4, 75.01 -> 5, and any lesion at all, however small, scores at least 1.
    """
    if not np.isfinite(percent) or percent < 0 or percent > 100 + 1e-9:
        raise ValueError(f"percent must be within 0..100, got {percent!r}")
    if percent == 0:
        return 0
    if percent < 5:
        return 1
    if percent <= 25:
        return 2
    if percent <= 50:
        return 3
    if percent <= 75:
        return 4
    return 5


def lung_zones(lungs: np.ndarray, cranial_first: bool = False) -> np.ndarray:
    """Zone map (z, y, x) uint8: each lung cut into thirds of its own cranio-caudal extent.

    1-3 upper/middle/lower third of the right lung, 4-6 of the left (ZONE_NAMES).
    `cranial_first`: whether slice 0 is the most cranial slice. The project's volumes are
    sorted by ascending patient z (DICOM LPS, +z towards the head), so slice 0 is the most
    caudal and the default is False; pass True for a volume stored head first (a slice
    direction pointing to the feet).
    """
    zones = np.zeros(lungs.shape, dtype=np.uint8)
    for side, first_zone in ((1, 1), (2, 4)):
        slices = np.flatnonzero(np.any(lungs == side, axis=(1, 2)))
        if slices.size == 0:
            continue
        lo, hi = int(slices[0]), int(slices[-1]) + 1
        # Thirds of the extent in slices: edges rounded to whole slices.
        edges = np.rint(np.linspace(lo, hi, 4)).astype(int)
        for third in range(3):
            zone = first_zone + (third if cranial_first else 2 - third)
            part = slice(edges[third], edges[third + 1])
            zones[part][lungs[part] == side] = zone
    return zones


def _assign_to_nearest(regions: np.ndarray, voxels: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Give each voxel of `voxels` that has no region the label of the nearest region voxel.

    Lesion voxels just outside a lung or lobe mask belong to the region next to them. The
    search is cropped to the voxels' bounding box plus a margin, widened to the whole
    volume only if no region lies in the crop.
    """
    missing = voxels & (regions == 0)
    if not missing.any() or not regions.any():
        return regions
    out = regions.copy()
    box = _bbox_with_margin(missing, 10)
    if not regions[box].any():
        box = tuple(slice(None) for _ in regions.shape)
    sampling = (float(spacing[2]), float(spacing[1]), float(spacing[0]))
    crop = regions[box]
    indices = ndimage.distance_transform_edt(
        crop == 0, sampling=sampling, return_distances=False, return_indices=True
    )
    nearest = crop[tuple(indices)]
    target = out[box]
    target[missing[box]] = nearest[missing[box]]
    return out


def _bbox_with_margin(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    coords = np.nonzero(mask)
    return tuple(
        slice(max(int(c.min()) - margin, 0), min(int(c.max()) + 1 + margin, n))
        for c, n in zip(coords, mask.shape, strict=True)
    )


def _class_volumes(
    labels: np.ndarray, lesion_classes: Mapping[int, str], voxel_ml: float
) -> dict[str, float]:
    return {name: np.count_nonzero(labels == value) * voxel_ml for value, name in lesion_classes.items()}


def _hu_split(
    labels: np.ndarray, hu: np.ndarray | None, other_class: int, voxel_ml: float
) -> dict[str, float] | None:
    """Unknown-class lesions ("other opacity") split by HU at the consolidation threshold."""
    if hu is None:
        return None
    other = labels == other_class
    dense = np.count_nonzero(other & (hu >= CONSOLIDATION_MIN_HU))
    return {
        "ggo_like": (np.count_nonzero(other) - dense) * voxel_ml,
        "consolidation_like": dense * voxel_ml,
    }


def _region_rows(
    regions: np.ndarray, lung: np.ndarray, lesion: np.ndarray, names: Mapping[int, str], voxel_ml: float
) -> list[dict[str, Any]]:
    size = max(names) + 1
    lung_counts = np.bincount(regions[lung], minlength=size)
    lesion_counts = np.bincount(regions[lesion & lung], minlength=size)
    rows = []
    for value, name in names.items():
        lung_n, lesion_n = int(lung_counts[value]), int(lesion_counts[value])
        percent = 100.0 * lesion_n / lung_n if lung_n else 0.0
        rows.append(
            {
                "name": name,
                "lung_ml": lung_n * voxel_ml,
                "lesion_ml": lesion_n * voxel_ml,
                "percent": percent,
                "score": severity_band(percent),
            }
        )
    return rows


def quantify(
    labels: np.ndarray,
    lungs: np.ndarray,
    spacing: Spacing,
    hu: np.ndarray | None = None,
    lobes: np.ndarray | None = None,
    lesion_classes: Mapping[int, str] = DEFAULT_LESION_CLASSES,
    *,
    lobe_names: Mapping[int, str] = LOBE_NAMES,
    lobe_note: str = LOBE_NOTE,
    cranial_first: bool = False,
    other_class: int = OTHER_OPACITY,
) -> dict[str, Any]:
    """The quantification report of one scan as a JSON-ready dict.

    Lesion voxels outside the lung mask are counted as lung: a lesion is lung tissue that
    the lung threshold missed (dense consolidation against the pleura is above -400 HU),
    so the lung volume is the union of the lung mask and the lesions. Such voxels join the
    nearest lobe or zone. With `lobes` (a lobe model's map), every lung voxel the lobe map
    left out joins the nearest lobe too, so the lobes add up to the lung volume; `lobe_note`
    then says where the lobes came from. Lesion voxels are those whose label is a key of lesion_classes.

    `by_hu_ml` (only when `hu` is given) splits the lesions of unknown class
    (`other_class`, "other opacity") into ground-glass-like (< -350 HU) and
    consolidation-like (>= -350 HU) volumes. `cranial_first`: whether slice 0 is the most
    cranial (see lung_zones; default False, slice 0 at the feet).
    """
    voxel_ml = float(spacing[0]) * float(spacing[1]) * float(spacing[2]) / 1000.0
    lesion = np.isin(labels, list(lesion_classes))
    lung = (lungs > 0) | lesion
    lung_n, lesion_n = np.count_nonzero(lung), np.count_nonzero(lesion)

    if lobes is not None:
        kind, names, note = "lobe", lobe_names, lobe_note
        # The lobe model and the lung mask disagree at the edges; the lung mask decides
        # what is lung, the lobe map only which lobe.
        regions = _assign_to_nearest(lobes.astype(np.uint8, copy=False), lung, spacing)
    else:
        kind, names, note = "zone", ZONE_NAMES, ZONE_NOTE
        sides = _assign_to_nearest(lungs.astype(np.uint8, copy=False), lesion, spacing)
        regions = lung_zones(sides, cranial_first)
    rows = _region_rows(regions, lung, lesion, names, voxel_ml)

    return {
        "voxel_ml": voxel_ml,
        "lung_ml": lung_n * voxel_ml,
        "lesion_ml": lesion_n * voxel_ml,
        "percent_involved": 100.0 * lesion_n / lung_n if lung_n else 0.0,
        "by_class_ml": _class_volumes(labels, lesion_classes, voxel_ml),
        "by_hu_ml": _hu_split(labels, hu, other_class, voxel_ml),
        "region_kind": kind,
        "region_note": note,
        "regions": rows,
        "severity_total": sum(row["score"] for row in rows),
        "severity_max": MAX_REGION_SCORE * len(rows),
    }

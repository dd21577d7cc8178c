import math

import numpy as np
import pytest

from modelassist.quantify import LOBE_NAMES, ZONE_NAMES, lung_zones, quantify, severity_band


@pytest.mark.parametrize(
    ("percent", "band"),
    [
        (0.0, 0),
        (1e-9, 1),
        (0.5, 1),
        (4.99, 1),
        (5.0, 2),
        (5.01, 2),
        (25.0, 2),
        (25.01, 3),
        (50.0, 3),
        (50.01, 4),
        (75.0, 4),
        (75.01, 5),
        (100.0, 5),
    ],
)
def test_severity_band_edges(percent, band):
    assert severity_band(percent) == band


@pytest.mark.parametrize("percent", [-0.1, 100.5, math.nan, math.inf])
def test_severity_band_rejects_impossible_percents(percent):
    with pytest.raises(ValueError):
        severity_band(percent)


def box_lung(lesion_voxels: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """A 10 x 10 x 10 lung (left half right lung, right half left lung) and a lesion."""
    lungs = np.zeros((10, 10, 10), dtype=np.uint8)
    lungs[:, :, :5] = 1
    lungs[:, :, 5:] = 2
    labels = np.zeros_like(lungs)
    labels.reshape(-1)[:lesion_voxels] = 1
    return labels, lungs


def test_volumes_and_percent_from_exact_counts():
    labels, lungs = box_lung(100)

    report = quantify(labels, lungs, (1.0, 1.0, 1.0))

    assert report["lung_ml"] == pytest.approx(1.0)
    assert report["lesion_ml"] == pytest.approx(0.1)
    assert report["percent_involved"] == pytest.approx(10.0)
    assert report["by_class_ml"] == pytest.approx(
        {"ground-glass opacity": 0.1, "consolidation": 0.0, "other opacity": 0.0}
    )
    assert report["by_hu_ml"] is None


def test_voxel_volume_comes_from_the_spacing():
    labels, lungs = box_lung(100)

    report = quantify(labels, lungs, (0.5, 0.5, 2.0))

    assert report["voxel_ml"] == pytest.approx(0.0005)
    assert report["lung_ml"] == pytest.approx(0.5)
    assert report["lesion_ml"] == pytest.approx(0.05)
    assert report["percent_involved"] == pytest.approx(10.0)


def test_lesion_outside_the_lung_mask_counts_as_lung():
    labels, lungs = box_lung(0)
    lungs[0] = 0  # the lung threshold missed the top slice...
    labels[0] = 2  # ...because it is consolidated

    report = quantify(labels, lungs, (1.0, 1.0, 1.0))

    assert report["lung_ml"] == pytest.approx(1.0)
    assert report["lesion_ml"] == pytest.approx(0.1)
    assert report["percent_involved"] == pytest.approx(10.0)
    assert sum(r["lung_ml"] for r in report["regions"]) == pytest.approx(1.0)
    assert sum(r["lesion_ml"] for r in report["regions"]) == pytest.approx(0.1)


def test_other_opacity_is_split_by_hu_when_hu_is_given():
    labels, lungs = box_lung(0)
    labels[0, 0, :4] = 3
    hu = np.full(labels.shape, -800, dtype=np.int16)
    hu[0, 0, :3] = -351  # ground-glass-like
    hu[0, 0, 3] = -350  # consolidation-like: the threshold belongs to consolidation

    report = quantify(labels, lungs, (1.0, 1.0, 1.0), hu=hu)

    assert report["by_hu_ml"] == pytest.approx({"ggo_like": 0.003, "consolidation_like": 0.001})
    assert report["by_class_ml"]["other opacity"] == pytest.approx(0.004)


def test_zones_are_thirds_of_each_lung_from_the_cranial_end():
    lungs = np.zeros((9, 4, 4), dtype=np.uint8)
    lungs[:, :, :2] = 1
    lungs[3:9, :, 2:] = 2  # the left lung starts lower

    zones = lung_zones(lungs, cranial_first=True)

    assert list(zones[:, 0, 0]) == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert list(zones[:, 0, 3]) == [0, 0, 0, 4, 4, 5, 5, 6, 6]
    assert list(lung_zones(lungs, cranial_first=False)[:, 0, 0]) == [3, 3, 3, 2, 2, 2, 1, 1, 1]
    assert zones.dtype == np.uint8
    assert ZONE_NAMES[1] == "upper third of the right lung"


def test_zones_default_to_slice_zero_at_the_feet():
    lungs = np.zeros((9, 4, 4), dtype=np.uint8)
    lungs[:, :, :2] = 1

    assert list(lung_zones(lungs)[:, 0, 0]) == [3, 3, 3, 2, 2, 2, 1, 1, 1]


def test_zone_report_scores_each_zone_and_says_they_are_not_lobes():
    lungs = np.zeros((9, 10, 10), dtype=np.uint8)
    lungs[:, :, :5] = 1
    lungs[:, :, 5:] = 2
    labels = np.zeros_like(lungs)
    labels[0:3, :, :5][:, :3, :] = 1  # 30 % of the right upper zone
    labels[6:9, :, 5:] = 2  # all of the left lower zone

    report = quantify(labels, lungs, (1.0, 1.0, 1.0), cranial_first=True)

    assert report["region_kind"] == "zone"
    assert "not anatomical lobes" in report["region_note"]
    assert [r["name"] for r in report["regions"]] == list(ZONE_NAMES.values())
    assert [r["score"] for r in report["regions"]] == [3, 0, 0, 0, 0, 5]
    assert report["regions"][0]["percent"] == pytest.approx(30.0)
    assert report["severity_total"] == 8
    assert report["severity_max"] == 30


def test_lobe_report_scores_five_lobes_out_of_25():
    lungs = np.ones((5, 4, 4), dtype=np.uint8)
    lobes = np.zeros_like(lungs)
    for lobe in range(1, 6):
        lobes[lobe - 1] = lobe  # one slice (16 voxels) per lobe
    labels = np.zeros_like(lungs)
    labels[0].reshape(-1)[:1] = 1  # 1 of 16: 6.25 % of the left upper lobe -> 2
    labels[4] = 2  # the whole right lower lobe -> 5

    report = quantify(labels, lungs, (1.0, 1.0, 1.0), lobes=lobes)

    assert report["region_kind"] == "lobe"
    assert [r["name"] for r in report["regions"]] == list(LOBE_NAMES.values())
    assert [r["score"] for r in report["regions"]] == [2, 0, 0, 0, 5]
    assert report["severity_total"] == 7
    assert report["severity_max"] == 25


def test_lesion_outside_the_lobes_joins_the_nearest_lobe():
    lungs = np.zeros((5, 4, 8), dtype=np.uint8)
    lungs[:, :, :6] = 1
    lobes = np.zeros_like(lungs)
    lobes[:, :, :3] = 3
    lobes[:, :, 3:6] = 4
    labels = np.zeros_like(lungs)
    labels[:, :, 6] = 2  # right next to lobe 4, outside every mask

    report = quantify(labels, lungs, (1.0, 1.0, 1.0), lobes=lobes)

    by_name = {r["name"]: r for r in report["regions"]}
    assert by_name["right middle lobe"]["lesion_ml"] == pytest.approx(0.02)
    assert by_name["right upper lobe"]["lesion_ml"] == 0


def test_empty_lungs_give_a_zero_report():
    empty = np.zeros((4, 4, 4), dtype=np.uint8)

    report = quantify(empty, empty, (1.0, 1.0, 1.0))

    assert report["lung_ml"] == 0 and report["percent_involved"] == 0
    assert report["severity_total"] == 0

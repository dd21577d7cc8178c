"""Phantom cohorts (issue #14 §3): three scan-level patterns with the geometry radiologists know
them by, four institution scanner styles that show in the HU and in the DICOM headers, and
everything deterministic per seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from core.label_schema import COVID19_SCHEMA
from demo.phantom import CONSOLIDATION, GGO, LEFT_LUNG, RIGHT_LUNG, write_ct_series
from demo.phantoms.cohorts import (
    DIAGNOSIS,
    PATTERNS,
    SEVERITIES,
    cohort,
    make_case,
    scanner_style,
)
from demo.phantoms.scanner import render_styled
from demo.phantoms.tissues import ATELECTASIS, EMPHYSEMA, NODULE, T_MUSCLE

SIZE = {"slices": 48, "rows": 128, "cols": 128}
SEEDS = (3, 4, 5)


def case(pattern: str, severity: str, seed: int, institution: int = 0):
    return make_case(pattern, severity, scanner_style(institution), seed, **SIZE)


def pleural_share(p, mm: float = 12.0) -> float:
    """Share of lesion voxels within `mm` of the lung's edge in their slice."""
    depth = np.stack([ndimage.distance_transform_edt(s) for s in p.lungs > 0]) * p.spacing[0]
    return float((depth[p.lesions > 0] <= mm).mean())


def lung_reference(p, mm: float = 12.0) -> float:
    depth = np.stack([ndimage.distance_transform_edt(s) for s in p.lungs > 0]) * p.spacing[0]
    return float((depth[p.lungs > 0] <= mm).mean())


# --- determinism ---------------------------------------------------------------------------------


def test_the_same_arguments_give_identical_arrays_and_other_seeds_do_not():
    a, b = case("covid19", "moderate", 7), case("covid19", "moderate", 7)
    for name in ("hu", "lesions", "lungs", "findings"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.spacing == b.spacing and a.origin == b.origin
    assert not np.array_equal(case("covid19", "moderate", 8).hu, a.hu)

    first, again = cohort(4, institution=1, seed=2, **SIZE), cohort(4, institution=1, seed=2, **SIZE)
    assert [(c.pattern, c.severity, c.patient_id, c.seed) for c in first] == [
        (c.pattern, c.severity, c.patient_id, c.seed) for c in again
    ]
    assert all(np.array_equal(x.phantom.hu, y.phantom.hu) for x, y in zip(first, again, strict=True))


def test_a_cohort_stratifies_the_patterns_mixes_severities_and_follows_a_mix():
    three = cohort(3, institution=0, **SIZE)
    assert sorted(c.pattern for c in three) == sorted(PATTERNS)
    six = cohort(6, institution=2, seed=1, slices=8, rows=32, cols=32)
    assert {c.pattern: sum(d.pattern == c.pattern for d in six) for c in six} == dict.fromkeys(PATTERNS, 2)
    assert len({c.severity for c in six}) >= 2 and {c.severity for c in six} <= set(SEVERITIES)
    assert all(c.style == scanner_style(2) and c.phantom.style == c.style for c in six)
    assert (
        len({c.patient_id for c in six + cohort(6, institution=3, seed=1, slices=8, rows=32, cols=32)}) == 12
    )

    covid_only = cohort(4, institution=0, slices=8, rows=32, cols=32, mix={"covid19": 1.0, "no_infection": 0})
    assert {c.pattern for c in covid_only} == {"covid19"}
    skewed = cohort(10, institution=0, slices=8, rows=32, cols=32, mix={"covid19": 0.8, "no_infection": 0.2})
    assert sorted(c.pattern for c in skewed) == ["covid19"] * 8 + ["no_infection"] * 2
    with pytest.raises(ValueError, match="unknown pattern"):
        cohort(3, institution=0, mix={"flu": 1.0})


def test_each_pattern_carries_a_diagnosis_the_campaign_schema_offers():
    choices = COVID19_SCHEMA["scan_labels"][0]["choices"]
    assert [DIAGNOSIS[p] for p in PATTERNS] == choices
    assert all(
        c.diagnosis == DIAGNOSIS[c.pattern] for c in cohort(3, institution=1, slices=8, rows=32, cols=32)
    )


# --- the patterns' geometry ----------------------------------------------------------------------


@pytest.mark.parametrize("severity", ["moderate", "severe"])
def test_covid_lesions_are_bilateral_peripheral_posterior_and_basal(severity):
    lower, posterior = [], []
    for seed in SEEDS:
        p = case("covid19", severity, seed)
        les = p.lesions > 0
        right, left = (les & (p.lungs == RIGHT_LUNG)).sum(), (les & (p.lungs == LEFT_LUNG)).sum()
        assert min(right, left) > 0.1 * les.sum(), f"seed {seed}: not bilateral ({right} vs {left})"
        assert set(np.unique(p.lesions)) >= {0, GGO}
        z, y, _ = np.nonzero(les)
        _, lung_y, _ = np.nonzero(p.lungs)
        lower.append((z < p.hu.shape[0] / 2).mean())  # the lungs themselves: about one half
        posterior.append((y > lung_y.mean()).mean())
        # Subpleural first; severe disease also spreads inwards, so it only has to stay above
        # the lung's own share of subpleural voxels.
        margin = 0.1 if severity == "moderate" else 0.0
        assert pleural_share(p) > lung_reference(p) + margin, f"seed {seed}: not peripheral"
    # A few large lesions per scan: predominance shows over scans, and in each scan a majority.
    assert min(lower) > 0.5 and np.mean(lower) > 0.6, lower
    assert min(posterior) > 0.5 and np.mean(posterior) > 0.6, posterior
    # Later disease consolidates inside the ground glass.
    assert any((case("covid19", "severe", s).lesions == CONSOLIDATION).any() for s in SEEDS)


def test_covid_grows_from_mild_to_severe():
    volume = {
        s: np.mean([(case("covid19", s, seed).lesions > 0).sum() for seed in SEEDS]) for s in SEVERITIES
    }
    assert volume["mild"] < volume["moderate"] < volume["severe"]


@pytest.mark.parametrize("severity", ["mild", "moderate", "severe"])
def test_other_infection_is_a_mostly_unilateral_lobar_or_segmental_consolidation(severity):
    for seed in SEEDS:
        p = case("other_infection", severity, seed)
        les = p.lesions > 0
        sides = sorted([(les & (p.lungs == RIGHT_LUNG)).sum(), (les & (p.lungs == LEFT_LUNG)).sum()])
        assert sides[1] >= 0.85 * les.sum(), f"seed {seed}: not mostly one lung {sides}"
        cons = p.lesions == CONSOLIDATION
        assert cons.sum() >= 0.5 * les.sum(), f"seed {seed}: consolidation is not what dominates"
        pieces, _ = ndimage.label(cons)
        assert np.bincount(pieces.ravel())[1:].max() >= 0.6 * cons.sum()  # one confluent region
        if severity != "mild":
            # Air bronchograms: air-density voxels inside the consolidation's mask.
            assert (p.hu[cons] < -600).sum() >= 3, f"seed {seed}: no air bronchogram"


@pytest.mark.parametrize("severity", SEVERITIES)
def test_no_infection_has_an_empty_lesion_mask_but_incidental_findings_in_the_hu(severity):
    kinds = set()
    for seed in SEEDS:
        p = case("no_infection", severity, seed)
        assert not p.lesions.any()
        assert p.findings.any() and np.all(p.lungs[p.findings > 0] > 0)
        for finding in (NODULE, ATELECTASIS):
            if (p.findings == finding).sum() >= 3:
                assert np.median(p.hu[p.findings == finding]) > -450  # dense: a model must not call it lesion
                kinds.add(finding)
        if (p.findings == EMPHYSEMA).sum() >= 3:
            parenchyma = p.hu[(p.lungs > 0) & (p.findings == 0) & (p.hu < -700)]
            assert np.median(p.hu[p.findings == EMPHYSEMA]) < np.median(parenchyma) - 60
            kinds.add(EMPHYSEMA)
    assert kinds, "no incidental finding was drawn"


# --- scanner styles ------------------------------------------------------------------------------


def test_the_four_institution_styles_are_fixed_distinct_and_within_clinical_ranges():
    styles = [scanner_style(i) for i in range(4)]
    assert styles == [scanner_style(i) for i in range(4)] and len(set(styles)) == 4
    assert len({s.kernel_name for s in styles}) == 4 and len({s.noise_hu for s in styles}) == 4
    assert all(1 <= s.slice_thickness_mm <= 5 and abs(s.hu_offset) <= 20 for s in styles)
    assert scanner_style(9) == scanner_style(9) != scanner_style(10)
    with pytest.raises(ValueError):
        scanner_style(-1)


@pytest.mark.parametrize("institution", range(4))
def test_a_style_renders_its_noise_and_offset_on_a_uniform_block(institution):
    style = scanner_style(institution)
    block = np.full((24, 64, 64), T_MUSCLE, dtype=np.uint8)
    hu, _, _ = render_styled(block, np.random.default_rng(0), style, 1.25, [])
    inner = hu[4:-4, 8:-8, 8:-8].astype(np.float64)
    assert inner.mean() == pytest.approx(50 + style.hu_offset, abs=1.5)
    assert inner.std() == pytest.approx(style.noise_hu, rel=0.12)


def measured(cases) -> tuple[float, float, float]:
    """What a physicist would measure: the median HU of air in front of the chest (calibration),
    and in the lung parenchyma (vessels and lesions left out) the SD of the high-pass residual
    (noise) and its correlation with the neighbouring pixel (kernel)."""
    medians, sds, corrs = [], [], []
    for c in cases:
        p = c.phantom
        hu = p.hu.astype(np.float32)
        middle = hu.shape[2] // 2
        medians.append(np.median(hu[:, 3:8, middle - 10 : middle + 10]))
        residual = hu - ndimage.uniform_filter(hu, (1, 5, 5))
        where = (p.lungs > 0) & (p.lesions == 0) & (p.findings == 0) & (hu < -700)
        where &= ndimage.binary_erosion(where, iterations=2)
        sds.append(residual[where].std())
        shifted = np.roll(residual, 1, axis=2)
        corrs.append(np.corrcoef(residual[where], shifted[where])[0, 1])
    return float(np.mean(medians)), float(np.mean(sds)), float(np.mean(corrs))


def test_institutions_differ_measurably_in_the_hu_of_their_phantoms():
    sharp = measured(cohort(3, institution=1, **SIZE))  # noisy, sharp kernel, +12 HU
    soft = measured(cohort(3, institution=2, **SIZE))  # quiet, soft kernel, -15 HU
    assert sharp[0] - soft[0] == pytest.approx(12 - -15, abs=3)
    assert soft[0] == pytest.approx(-1000 - 15, abs=3)
    assert sharp[1] > 1.5 * soft[1]  # noise level
    assert soft[2] > sharp[2] + 0.1  # a soft kernel correlates neighbouring pixels


# --- DICOM ---------------------------------------------------------------------------------------


def test_the_dicom_writer_records_the_style_honestly(tmp_path: Path):
    tags = []
    for institution in (1, 2):
        c = cohort(1, institution=institution, slices=12, rows=96, cols=96)[0]
        p = c.phantom
        paths = write_ct_series(
            p.hu,
            tmp_path / str(institution),
            spacing=p.spacing,
            origin=p.origin,
            patient_id=c.patient_id,
            patient_name="COHORT^CASE",
            scanner=c.style,
        )
        ds = pydicom.dcmread(paths[0])
        step = p.spacing[2]
        assert float(ds.SliceThickness) == pytest.approx(c.style.slice_thickness_on(step))
        assert float(ds.SliceThickness) >= step  # never claims gaps between the slices
        assert float(ds.SpacingBetweenSlices) == pytest.approx(step)
        assert ds.ConvolutionKernel == c.style.kernel_name
        assert ds.ManufacturerModelName == c.style.name
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([p.spacing[1], p.spacing[0]])
        fov = float(ds.ReconstructionDiameter)
        assert fov == pytest.approx(96 * p.spacing[0], abs=0.01) and fov >= c.style.fov_mm - 0.01
        tags.append((ds.ConvolutionKernel, fov))
    assert tags[0] != tags[1]
    assert scanner_style(2).slice_thickness_on(1.6) == 5.0  # a thick protocol shows on a fine grid


@pytest.mark.django_db
def test_a_cohort_series_is_accepted_by_the_real_ingest(cast, tmp_path: Path):
    from imaging.ingest.service import ingest_path

    for c in cohort(2, institution=2, slices=16, rows=64, cols=64):
        write_ct_series(
            c.phantom.hu,
            tmp_path / c.patient_id,
            spacing=c.phantom.spacing,
            origin=c.phantom.origin,
            patient_id=c.patient_id,
            patient_name="COHORT^CASE",
            scanner=c.style,
        )
    report = ingest_path(tmp_path, institution=cast.institution, campaign_id=cast.campaign.pk)
    assert len(report.scans_created) == 2 and not report.rejected_series, report.as_dict()

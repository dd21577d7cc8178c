"""Phantom cohorts: cases of three scan-level patterns, as one institution's scanner shows them.

`cohort(n, institution=k)` gives n cases of institution k, rendered in its scanner style
(`scanner_style(k)`), so a model trained on some institutions and tested on another meets a real
external test: other noise, kernel, slice thickness, calibration and field of view. Everything is
deterministic per argument. Phantom figures test the pipeline, not clinical accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from demo.phantoms.anatomy import build_anatomy, draw_body
from demo.phantoms.generator import Phantom, assemble, default_slice_step, phantom_grid
from demo.phantoms.lesions import draw_pattern
from demo.phantoms.scanner import ScannerStyle, render_styled, scanner_style
from demo.phantoms.tissues import FINDING_LUT

PATTERNS = ("covid19", "other_infection", "no_infection")
# The campaign's diagnosis choice (core.label_schema.COVID19_SCHEMA) for each pattern.
DIAGNOSIS = {
    "covid19": "COVID-19",
    "other_infection": "other pulmonary infection",
    "no_infection": "no imaging signs of infection",
}
SEVERITIES = ("mild", "moderate", "severe")

__all__ = [
    "DIAGNOSIS",
    "PATTERNS",
    "SEVERITIES",
    "CohortCase",
    "ScannerStyle",
    "cohort",
    "make_case",
    "scanner_style",
]


@dataclass
class CohortCase:
    """One scan of a cohort: the phantom, what it shows, and who it is."""

    phantom: Phantom
    pattern: str  # one of PATTERNS
    severity: str  # one of SEVERITIES
    diagnosis: str  # DIAGNOSIS[pattern]: the scan-level label a curator gives it
    style: ScannerStyle
    patient_id: str
    seed: int


def make_case(
    pattern: str,
    severity: str,
    style: ScannerStyle,
    seed: int,
    *,
    slices: int = 64,
    rows: int = 128,
    cols: int = 128,
) -> Phantom:
    """One phantom of `pattern` at `severity`, rendered in `style` (deterministic per arguments).

    The pixel spacing follows the style's field of view, widened where the body would not fit;
    slices span ~320 mm as make_phantom's do, and the slice profile is the style's thickness
    (never thinner than the slice step: see ScannerStyle.slice_thickness_on)."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, not {pattern!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
    if slices < 8 or rows < 32 or cols < 32:
        raise ValueError("a cohort case needs at least 8 slices of 32 × 32 pixels")
    rng_anat = np.random.default_rng([seed, 10])
    rng_les, rng_noise = np.random.default_rng([seed, 11]), np.random.default_rng([seed, 12])
    body = draw_body(rng_anat)
    fit = max(2 * body.a / (0.9 * cols), (body.b_ant + body.b_post) / (0.8 * rows))
    pixel = round(max(style.fov_mm / cols, fit), 4)
    spacing = (pixel, pixel, default_slice_step(slices))
    grid = phantom_grid(body, (slices, rows, cols), spacing)
    label = build_anatomy(grid, body, rng_anat)
    offsets = draw_pattern(label, grid, rng_les, pattern, severity)
    hu, lesions, lungs = render_styled(label, rng_noise, style, spacing[2], offsets)
    return assemble(grid, spacing, hu, lesions, lungs, style, FINDING_LUT[label])


def cohort(
    n: int,
    *,
    institution: int,
    seed: int = 0,
    slices: int = 64,
    rows: int = 128,
    cols: int = 128,
    mix: dict[str, float] | None = None,
) -> list[CohortCase]:
    """n cases of institution `institution` in its scanner style. Patterns follow `mix` (default
    equal thirds), stratified: counts by largest remainder, every pattern of the mix present once
    n allows; severities cycle within each pattern from a random start. Deterministic per args."""
    if n < 0:
        raise ValueError(f"n must be 0 or more, not {n}")
    style = scanner_style(institution)
    rng = np.random.default_rng([institution, seed, 7])
    counts = _stratified_counts(n, mix or dict.fromkeys(PATTERNS, 1.0))
    plan: list[tuple[str, str]] = []
    for pattern, count in counts.items():
        start = int(rng.integers(len(SEVERITIES)))
        plan += [(pattern, SEVERITIES[(start + j) % len(SEVERITIES)]) for j in range(count)]
    order = rng.permutation(len(plan))
    cases = []
    for i, j in enumerate(order):
        pattern, severity = plan[j]
        case_seed = int(np.random.SeedSequence([institution, seed, i]).generate_state(1)[0])
        phantom = make_case(pattern, severity, style, case_seed, slices=slices, rows=rows, cols=cols)
        cases.append(
            CohortCase(
                phantom,
                pattern,
                severity,
                DIAGNOSIS[pattern],
                style,
                f"I{institution}S{seed}-{i:04d}",
                case_seed,
            )
        )
    return cases


def _stratified_counts(n: int, mix: dict[str, float]) -> dict[str, int]:
    unknown = set(mix) - set(PATTERNS)
    if unknown:
        raise ValueError(f"unknown pattern(s) in mix: {', '.join(sorted(unknown))}")
    weights = {p: float(w) for p, w in mix.items() if w > 0}
    if not weights:
        raise ValueError("mix needs at least one pattern with a positive share")
    total = sum(weights.values())
    exact = {p: n * w / total for p, w in weights.items()}
    counts = {p: int(np.floor(v)) for p, v in exact.items()}
    # Every pattern of the mix once first (when n allows), then the largest remainders.
    if n >= len(weights):
        for p in counts:
            counts[p] = max(counts[p], 1)
    while sum(counts.values()) > n:
        p = max(counts, key=lambda q: (counts[q] - exact[q], counts[q]))
        counts[p] -= 1
    for p in sorted(exact, key=lambda q: exact[q] - counts[q], reverse=True):
        if sum(counts.values()) >= n:
            break
        counts[p] += 1
    return {p: counts[p] for p in PATTERNS if p in counts}

"""From an export's cases to classifier inputs and targets: the diagnosis of each case (the
curated scan-level label in the manifest) and its HU volume inside the lung mask."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from modelassist.baseline import segment_lungs
from modelassist.classifier.network import prepare_input

DIAGNOSIS_KEY = "diagnosis"


def diagnosis_label(schema: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """(key, choices) of the scan label the classifier predicts: "diagnosis" when the schema has
    it, else its first scan label; None when the schema has no scan label of two choices or more."""
    labels = [lab for lab in schema.get("scan_labels", []) if len(lab.get("choices", [])) >= 2]
    chosen = next((lab for lab in labels if lab["key"] == DIAGNOSIS_KEY), labels[0] if labels else None)
    return (str(chosen["key"]), [str(c) for c in chosen["choices"]]) if chosen else None


def case_targets(
    manifest_cases: Sequence[Mapping[str, Any]], key: str, classes: Sequence[str]
) -> list[int | None]:
    """The class index of each case's curated label; None where the case has none of the choices."""
    index = {name: i for i, name in enumerate(classes)}
    return [index.get(str((case.get("scan_labels") or {}).get(key))) for case in manifest_cases]


def lung_masks(cases: Sequence[tuple[np.ndarray, Any, tuple]]) -> list[np.ndarray]:
    """The baseline lung mask of each (hu, labels, spacing) case, as the report measures lungs."""
    return [segment_lungs(hu, spacing) for hu, _, spacing in cases]


def stack_inputs(
    cases: Sequence[tuple[np.ndarray, Any, tuple]], lungs: Sequence[np.ndarray], grid: Sequence[int]
) -> torch.Tensor:
    """(n, 1, z, y, x) inputs on a classifier's grid."""
    if not cases:
        return torch.zeros((0, 1, *(int(n) for n in grid)))
    return torch.stack([prepare_input(hu, lung, grid) for (hu, _, _), lung in zip(cases, lungs, strict=True)])

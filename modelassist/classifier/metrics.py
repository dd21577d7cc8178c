"""Test figures of the scan-level classifier, numpy only (Topff et al. report these):
per-class one-vs-rest AUC, micro- and macro-averaged AUC, sensitivity, specificity, PPV and NPV
of COVID-19 vs the rest at the argmax, the confusion matrix, and Pearson's r between predicted
and curated lesion volume.

A figure that the test cases cannot define (AUC of a class with no positive or no negative case,
a ratio with an empty denominator, r of a constant) is None, never a made-up number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def roc_auc(truth: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve of binary `truth` (1 positive) by `score`: the Mann-Whitney U
    statistic, ties counted one half. None when either class is absent."""
    truth = np.asarray(truth).astype(bool).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    # Average ranks give ties half a win each.
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(score.size, dtype=np.float64)
    sorted_scores = score[order]
    i = 0
    while i < score.size:
        j = i
        while j + 1 < score.size and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[truth].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def confusion_matrix(truth: Sequence[int], predicted: Sequence[int], n_classes: int) -> list[list[int]]:
    """rows: curated class, columns: predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    for t, p in zip(truth, predicted, strict=True):
        matrix[int(t), int(p)] += 1
    return matrix.tolist()


def _ratio(num: int, den: int) -> float | None:
    return float(num / den) if den else None


def binary_figures(truth: np.ndarray, predicted: np.ndarray, positive: int) -> dict[str, Any]:
    """Sensitivity, specificity, PPV, NPV of `positive` vs every other class."""
    t, p = np.asarray(truth) == positive, np.asarray(predicted) == positive
    tp, fp = int((t & p).sum()), int((~t & p).sum())
    fn, tn = int((t & ~p).sum()), int((~t & ~p).sum())
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
    }


def pearson_r(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's correlation coefficient; None with fewer than two pairs or a constant side."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.size < 2 or a.size != b.size:
        return None
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else None


def classifier_figures(
    truth: Sequence[int],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    positive: int = 0,
) -> dict[str, Any]:
    """Every classifier figure for integer `truth` (n,) and `probabilities` (n, classes).

    micro AUC: one ROC over every (case, class) pair of the one-hot truth and the probabilities;
    macro AUC: the mean of the per-class AUCs that the test cases define (say so: `macro_over`)."""
    truth_arr = np.asarray(truth, dtype=np.int64)
    probs = np.asarray(probabilities, dtype=np.float64).reshape(len(truth_arr), len(class_names))
    onehot = np.eye(len(class_names), dtype=np.int64)[truth_arr] if truth_arr.size else np.zeros_like(probs)
    per_class = {name: roc_auc(onehot[:, c], probs[:, c]) for c, name in enumerate(class_names)}
    defined = [v for v in per_class.values() if v is not None]
    predicted = probs.argmax(axis=1) if truth_arr.size else np.zeros(0, dtype=np.int64)
    return {
        "classes": list(class_names),
        "cases": int(truth_arr.size),
        "auc_per_class": per_class,
        "auc_micro": roc_auc(onehot.ravel(), probs.ravel()) if truth_arr.size else None,
        "auc_macro": float(np.mean(defined)) if defined else None,
        "macro_over": [name for name, v in per_class.items() if v is not None],
        "accuracy": _ratio(int((predicted == truth_arr).sum()), int(truth_arr.size)),
        "positive_class": class_names[positive],
        "vs_rest": binary_figures(truth_arr, predicted, positive),
        "confusion_matrix": confusion_matrix(truth_arr, predicted, len(class_names)),
        "confusion_matrix_axes": "rows: curated class, columns: predicted class (argmax), in the order of classes",
    }

"""The classifier's test figures against a small case computed by hand (issue #14 §2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelassist.classifier import metrics

CLASSES = ["COVID-19", "other pulmonary infection", "no imaging signs of infection"]
# Five test scans: curated class and predicted probabilities (argmax: 0, 1, 1, 0, 1).
TRUTH = [0, 0, 1, 2, 1]
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.4, 0.5, 0.1],
        [0.3, 0.6, 0.1],
        [0.5, 0.1, 0.4],
        [0.2, 0.7, 0.1],
    ]
)


def test_per_class_micro_and_macro_auc_match_the_hand_count():
    figures = metrics.classifier_figures(TRUTH, PROBS, CLASSES)

    # COVID-19: positives 0.7, 0.4 against negatives 0.3, 0.5, 0.2 -> 5 of 6 pairs ranked right.
    assert figures["auc_per_class"]["COVID-19"] == pytest.approx(5 / 6)
    assert figures["auc_per_class"]["other pulmonary infection"] == 1.0
    assert figures["auc_per_class"]["no imaging signs of infection"] == 1.0
    assert figures["auc_macro"] == pytest.approx((5 / 6 + 1 + 1) / 3)
    # Micro: 5 one-hot positives x 10 negatives; only the two 0.4s lose, each to two 0.5s.
    assert figures["auc_micro"] == pytest.approx(46 / 50)


def test_covid_vs_rest_and_the_confusion_matrix_match_the_hand_count():
    figures = metrics.classifier_figures(TRUTH, PROBS, CLASSES)

    vs = figures["vs_rest"]
    assert figures["positive_class"] == "COVID-19"
    assert (vs["tp"], vs["fn"], vs["fp"], vs["tn"]) == (1, 1, 1, 2)
    assert vs["sensitivity"] == 0.5 and vs["ppv"] == 0.5
    assert vs["specificity"] == pytest.approx(2 / 3) and vs["npv"] == pytest.approx(2 / 3)
    # Rows curated, columns predicted.
    assert figures["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert figures["accuracy"] == pytest.approx(3 / 5)


def test_ties_count_one_half_and_undefined_figures_are_none():
    assert metrics.roc_auc([1, 0], [0.5, 0.5]) == 0.5
    assert metrics.roc_auc([1, 1, 0], [0.5, 0.2, 0.5]) == 0.25
    assert metrics.roc_auc([1, 1], [0.3, 0.9]) is None  # no negative case

    # No "other infection" in the test split: its AUC is undefined and macro says what it averaged.
    figures = metrics.classifier_figures([0, 2], np.array([[0.8, 0.1, 0.1], [0.2, 0.1, 0.7]]), CLASSES)
    assert figures["auc_per_class"]["other pulmonary infection"] is None
    assert figures["macro_over"] == ["COVID-19", "no imaging signs of infection"]
    assert figures["auc_macro"] == 1.0
    assert figures["vs_rest"]["ppv"] == 1.0
    none_predicted = metrics.binary_figures(np.array([1, 2]), np.array([1, 2]), positive=0)
    assert none_predicted["sensitivity"] is None and none_predicted["ppv"] is None


def test_pearson_r_matches_the_hand_count():
    # dx = (-1, 0, 1), dy = (-7/3, -1/3, 8/3): sum dx*dy = 5, sum dx^2 = 2, sum dy^2 = 38/3.
    assert metrics.pearson_r([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / math.sqrt(2 * 38 / 3))
    assert metrics.pearson_r([1, 2, 3], [-1, -2, -3]) == pytest.approx(-1.0)
    assert metrics.pearson_r([1, 1, 1], [2, 4, 7]) is None
    assert metrics.pearson_r([1], [2]) is None

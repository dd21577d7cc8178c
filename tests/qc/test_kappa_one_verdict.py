"""Issue #17 §5: a checker who gave one verdict only leaves Cohen's kappa undefined, with why."""

import pytest

from qc.metrics import cohen_kappa


def test_kappa_is_undefined_with_a_reason_when_one_checker_passed_every_scan():
    # given: checker A passed all 4, checker B failed one (75 % agreement)
    pairs = [("pass", "pass")] * 3 + [("pass", "fail")]

    # when
    figures = cohen_kappa(pairs)

    # then: not "κ 0.00" beside 75 %, but undefined, saying who and the prevalence of pass
    assert figures["agreement"] == pytest.approx(0.75)
    assert figures["kappa"] is None
    assert figures["kappa_reason"] == "checker A passed every scan"
    assert figures["pass_share"] == pytest.approx(7 / 8)


def test_kappa_names_the_rater_it_was_given():
    figures = cohen_kappa([("fail", "pass"), ("fail", "fail")], raters=("dana", "the partner"))
    assert figures["kappa"] is None
    assert figures["kappa_reason"] == "dana failed every scan"


def test_kappa_is_a_number_when_both_raters_vary():
    figures = cohen_kappa([("pass", "pass"), ("fail", "fail"), ("pass", "fail"), ("pass", "pass")])
    assert figures["kappa"] == pytest.approx(0.5)
    assert figures["kappa_reason"] == ""

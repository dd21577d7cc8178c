"""The QC statistics on their own: kappa's edge cases, Dice, and closed rounds only."""

from __future__ import annotations

import pytest

from qc.metrics import cohen_kappa, qc_metrics
from tests.qc.conftest import decide, make_batch, open_checks, save, submit


def test_kappa_of_perfect_agreement_on_one_verdict_is_undefined():
    # expected agreement is 1: nothing to agree on beyond chance
    assert cohen_kappa([("pass", "pass")] * 20) == {
        "pairs": 20,
        "agreement": 1.0,
        "kappa": None,
        "kappa_reason": "checker A passed every scan and checker B passed every scan",
        "pass_share": 1.0,
    }


def test_kappa_textbook_values():
    assert cohen_kappa([("pass", "pass"), ("fail", "fail")] * 5)["kappa"] == pytest.approx(1.0)
    # one verdict each, never agreeing
    assert cohen_kappa([("pass", "fail"), ("fail", "pass")] * 2)["kappa"] == pytest.approx(-1.0)
    # 20 PP, 15 FF, 5 PF, 10 FP: po 0.7, pe 0.5 → 0.4
    pairs = (
        [("pass", "pass")] * 20 + [("fail", "fail")] * 15 + [("pass", "fail")] * 5 + [("fail", "pass")] * 10
    )
    assert cohen_kappa(pairs)["kappa"] == pytest.approx(0.4)
    assert cohen_kappa([]) == {
        "pairs": 0,
        "agreement": None,
        "kappa": None,
        "kappa_reason": "",
        "pass_share": None,
    }


def test_only_closed_rounds_count(cast, scans_of):
    scans = scans_of(2)
    batch = make_batch(cast.campaign, cast.manager, cast.annotator, scans)
    save(cast.annotator, cast.campaign, scans[0], time_spent_s=100)
    submit(cast.annotator, cast.campaign, scans[0])
    a, _ = open_checks(cast.campaign, scans[0])
    decide(a, "fail")
    figures = qc_metrics(cast.campaign, batch)
    assert figures["overall"]["first_pass"]["annotations"] == 0
    assert figures["by_checker"] == []  # a's verdict is not revealed while b has not decided
    assert figures["overall"]["time_per_scan"]["annotator"] == {
        "scans": 1,
        "total_s": 100.0,
        "mean_s_per_scan": 100.0,
    }


def test_the_dice_of_two_rounds_is_kept_and_not_decoded_again(cast, scans_of, monkeypatch):
    from django.core.cache import cache

    from qc import metrics
    from tests.qc.conftest import cube

    scans = scans_of(1)
    batch = make_batch(cast.campaign, cast.manager, cast.annotator, scans)
    save(cast.annotator, cast.campaign, scans[0], cube(x=(8, 16)))
    submit(cast.annotator, cast.campaign, scans[0])
    for check in open_checks(cast.campaign, scans[0]):
        decide(check, "fail")
    save(cast.annotator, cast.campaign, scans[0], cube(x=(8, 12)))  # half of round 1's cube
    submit(cast.annotator, cast.campaign, scans[0])
    cache.clear()
    first = qc_metrics(cast.campaign, batch)["overall"]["dice_consecutive_revisions"]
    assert first == {"pairs": 1, "mean": pytest.approx(2 * 128 / (256 + 128))}

    def no_decoding(revision):
        raise AssertionError(f"revision {revision.pk} decoded again")

    monkeypatch.setattr(metrics, "revision_labels", no_decoding)
    assert qc_metrics(cast.campaign, batch)["overall"]["dice_consecutive_revisions"] == first
    cache.clear()  # without the kept figure, the labels are decoded
    with pytest.raises(AssertionError, match="decoded again"):
        qc_metrics(cast.campaign, batch)

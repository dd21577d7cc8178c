"""QC figures per campaign, batch, annotator and checker (DESIGN: the dashboard's QC figures).

- first-pass rate of step 1: share of annotations whose round 1 both checkers passed
  (Jin et al. saw 80 %);
- rounds until pass: the round in which both checkers first passed the annotation;
- checker agreement: percent agreement and Cohen's kappa on pass/fail over the paired checks
  of one revision (slot A vs slot B);
- step-3 pass rate: share of the senior's spot-check verdicts that were pass (Jin et al.: 100 %);
- Dice between consecutive submitted revisions of an annotation (the revisions the checkers
  saw, round after round): how much each round of QC changed the labels. Class-aware: a voxel
  agrees only if both revisions give it the same non-zero class; two empty masks give 1;
- time per scan per role: annotator = sum of the scan's revision times; checkers and senior =
  sum of their recorded times on the scan.

Only closed rounds (both verdicts in) count, so the figures never reveal a verdict early.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from django.core.cache import cache

from annotation.dice import pooled_class_dice
from annotation.models import Annotation, Revision, RevisionSource
from annotation.services import revision_labels
from core.models import Batch, BatchItem, Campaign, User
from qc.models import BatchReview, Check, SpotCheck, Verdict
from qc.permissions import round_closed

PASS, FAIL = Verdict.PASS.value, Verdict.FAIL.value


# --- the statistics -------------------------------------------------------------------------


def cohen_kappa(pairs: list[tuple[str, str]], raters: tuple[str, str] = ("checker A", "checker B")) -> dict:
    """Percent agreement and Cohen's kappa of two raters on pass/fail.

    Kappa is undefined (None, with `kappa_reason`) when a rater gave one verdict only: then the
    chance agreement equals the observed one whatever the other rater did, and the formula gives
    0 (or 0/0) however often the two agree, e.g. 75 % agreement and kappa 0 when one checker
    passed every scan. `pass_share` is the prevalence of pass among all verdicts, the figure that
    says why."""
    n = len(pairs)
    if n == 0:
        return {"pairs": 0, "agreement": None, "kappa": None, "kappa_reason": "", "pass_share": None}
    po = sum(a == b for a, b in pairs) / n
    pe = sum((sum(a == c for a, _ in pairs) / n) * (sum(b == c for _, b in pairs) / n) for c in (PASS, FAIL))
    pass_share = sum((a == PASS) + (b == PASS) for a, b in pairs) / (2 * n)
    reasons = []
    for name, verdicts in zip(raters, zip(*pairs, strict=True), strict=True):
        if len(set(verdicts)) == 1:
            reasons.append(f"{name} {'passed' if verdicts[0] == PASS else 'failed'} every scan")
    if reasons or math.isclose(pe, 1.0):
        return {
            "pairs": n,
            "agreement": po,
            "kappa": None,
            "kappa_reason": " and ".join(reasons),
            "pass_share": pass_share,
        }
    return {
        "pairs": n,
        "agreement": po,
        "kappa": (po - pe) / (1 - pe),
        "kappa_reason": "",
        "pass_share": pass_share,
    }


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


# --- the data of one scope -----------------------------------------------------------------


@dataclass
class _AnnotationQc:
    annotation_id: int
    scan_id: int
    batch_id: int | None
    annotator_id: int | None
    rounds: dict[int, list[Check]] = field(default_factory=dict)  # closed rounds, slots A then B
    submitted_revisions: list[int] = field(default_factory=list)  # in round order
    spot_checks: list[SpotCheck] = field(default_factory=list)  # decided
    annotator_time_s: float = 0.0


def _load(campaign: Campaign, batch: Batch | None) -> list[_AnnotationQc]:
    items = BatchItem.objects.filter(campaign=campaign).select_related("batch").order_by("batch_id")
    if batch is not None:
        items = items.filter(batch=batch)
    batch_of = {i.scan_id: (i.batch_id, i.batch.annotator_id) for i in items}  # latest batch wins
    annotations = Annotation.objects.filter(campaign=campaign)
    if batch is not None:
        annotations = annotations.filter(scan_id__in=list(batch_of))
    out = {
        a.pk: _AnnotationQc(a.pk, a.scan_id, *batch_of.get(a.scan_id, (None, None)))
        for a in annotations.only("pk", "scan_id")
    }
    rounds: dict[tuple[int, int], list[Check]] = defaultdict(list)
    for c in Check.objects.filter(annotation_id__in=out).order_by("annotation_id", "round", "slot"):
        rounds[(c.annotation_id, c.round)].append(c)
    for (aid, rnd), checks in rounds.items():
        out[aid].submitted_revisions.append(checks[0].revision_id)
        if len(checks) == 2 and round_closed(checks):  # blindness: an open round reveals nothing
            out[aid].rounds[rnd] = checks
    for sc in SpotCheck.objects.filter(annotation_id__in=out).exclude(verdict=Verdict.PENDING).order_by("pk"):
        out[sc.annotation_id].spot_checks.append(sc)
    times = Revision.objects.filter(annotation_id__in=out, source=RevisionSource.HUMAN).values_list(
        "annotation_id", "time_spent_s"
    )
    for aid, seconds in times:
        out[aid].annotator_time_s += seconds
    return list(out.values())


# Label files are content-addressed (annotation/storage.py): the Dice of two label addresses
# never changes, so it is kept across calls. Recomputing it decoded two 52 MB volumes per pair on
# every dashboard view: with 20 annotators at work, ~1 s of the API process's CPU per view, taken
# from the region-grow clicks and box saves of the same process (issue #16 §1, bench/load.py).
_DICE_CACHE_PREFIX = "qc-pooled-dice:"


class _Volumes:
    """Label volumes by revision id, decoded once per call."""

    def __init__(self) -> None:
        self._by_sha: dict[str, np.ndarray] = {}
        self._revisions: dict[int, Revision] = {}

    def prefetch(self, revision_ids: Iterable[int]) -> None:
        wanted = set(revision_ids) - set(self._revisions)
        for rev in Revision.objects.filter(pk__in=wanted).select_related("annotation__scan"):
            self._revisions[rev.pk] = rev

    def get(self, revision_id: int) -> np.ndarray:
        rev = self._revisions[revision_id]
        if rev.label_sha256 not in self._by_sha:
            self._by_sha[rev.label_sha256] = revision_labels(rev)
        return self._by_sha[rev.label_sha256]

    def pooled_dice(self, first: int, second: int) -> float:
        """pooled_class_dice of two revisions' labels, decoded only when no earlier call kept it."""
        a, b = self._revisions[first].label_sha256, self._revisions[second].label_sha256
        if a == b:
            return 1.0  # the same labels: a round that changed nothing
        key = _DICE_CACHE_PREFIX + ":".join(sorted((a, b)))  # Dice is symmetric
        value = cache.get(key)
        if value is None:
            value = pooled_class_dice(self.get(first), self.get(second))
            cache.set(key, value, timeout=None)
        return float(value)


# --- figures ---------------------------------------------------------------------------------


def _first_pass(anns: list[_AnnotationQc]) -> dict:
    judged = [a for a in anns if 1 in a.rounds]
    passed = sum(all(c.verdict == PASS for c in a.rounds[1]) for a in judged)
    return {"annotations": len(judged), "passed": passed, "rate": _rate(passed, len(judged))}


def _rounds_until_pass(anns: list[_AnnotationQc]) -> dict:
    counts = []
    for a in anns:
        passing = [r for r, checks in sorted(a.rounds.items()) if all(c.verdict == PASS for c in checks)]
        if passing:
            counts.append(passing[0])
    distribution = Counter(counts)
    return {
        "annotations": len(counts),
        "mean": _mean([float(c) for c in counts]),
        "distribution": {str(k): distribution[k] for k in sorted(distribution)},
    }


def _agreement(anns: list[_AnnotationQc]) -> dict:
    pairs = [(checks[0].verdict, checks[1].verdict) for a in anns for checks in a.rounds.values()]
    return cohen_kappa(pairs)


def _step3(anns: list[_AnnotationQc]) -> dict:
    verdicts = [sc.verdict for a in anns for sc in a.spot_checks]
    passed = verdicts.count(PASS)
    return {"spot_checks": len(verdicts), "passed": passed, "rate": _rate(passed, len(verdicts))}


def _dice(anns: list[_AnnotationQc], volumes: _Volumes) -> dict:
    pairs = [(r1, r2) for a in anns for r1, r2 in itertools.pairwise(a.submitted_revisions)]
    volumes.prefetch(r for pair in pairs for r in pair)
    values = [volumes.pooled_dice(r1, r2) for r1, r2 in pairs]
    return {"pairs": len(values), "mean": _mean(values)}


def _time(anns: list[_AnnotationQc]) -> dict:
    def block(per_scan: list[float]) -> dict:
        return {"scans": len(per_scan), "total_s": sum(per_scan), "mean_s_per_scan": _mean(per_scan)}

    annotator = [a.annotator_time_s for a in anns if a.submitted_revisions]
    checker = [sum(c.time_spent_s for cs in a.rounds.values() for c in cs) for a in anns if a.rounds]
    senior = [sum(sc.time_spent_s for sc in a.spot_checks) for a in anns if a.spot_checks]
    return {"annotator": block(annotator), "checker": block(checker), "senior": block(senior)}


def _figures(anns: list[_AnnotationQc], volumes: _Volumes) -> dict:
    return {
        "scans": len(anns),
        "first_pass": _first_pass(anns),
        "rounds_until_pass": _rounds_until_pass(anns),
        "checker_agreement": _agreement(anns),
        "step3": _step3(anns),
        "dice_consecutive_revisions": _dice(anns, volumes),
        "time_per_scan": _time(anns),
    }


def _checker_figures(anns: list[_AnnotationQc], names: dict[int, str]) -> list[dict]:
    mine: dict[int, list[tuple[Check, Check]]] = defaultdict(list)
    for a in anns:
        for a_check, b_check in a.rounds.values():
            mine[a_check.checker_id].append((a_check, b_check))
            mine[b_check.checker_id].append((b_check, a_check))
    out = []
    for checker_id, pairs in sorted(mine.items()):
        passed = sum(own.verdict == PASS for own, _ in pairs)
        seconds = [own.time_spent_s for own, _ in pairs]
        out.append(
            {
                "user_id": checker_id,
                "username": names.get(checker_id, ""),
                "checks": len(pairs),
                "passed": passed,
                "pass_rate": _rate(passed, len(pairs)),
                "agreement_with_partner": cohen_kappa(
                    [(own.verdict, other.verdict) for own, other in pairs],
                    raters=(names.get(checker_id, "this checker"), "the partner"),
                ),
                "time": {"total_s": sum(seconds), "mean_s_per_check": _mean(seconds)},
            }
        )
    return out


def qc_metrics(campaign: Campaign, batch: Batch | None = None) -> dict:
    """All QC figures of a campaign (or of one of its batches)."""
    anns = _load(campaign, batch)
    volumes = _Volumes()
    user_ids = {a.annotator_id for a in anns} | {
        c.checker_id for a in anns for checks in a.rounds.values() for c in checks
    }
    names = dict(User.objects.filter(pk__in=user_ids - {None}).values_list("pk", "username"))
    batches = {b.pk: b for b in Batch.objects.filter(pk__in={a.batch_id for a in anns} - {None})}
    states = dict(BatchReview.objects.filter(batch_id__in=batches).values_list("batch_id", "state"))
    by_batch: dict[int, list[_AnnotationQc]] = defaultdict(list)
    by_annotator: dict[int, list[_AnnotationQc]] = defaultdict(list)
    for a in anns:
        if a.batch_id is not None:
            by_batch[a.batch_id].append(a)
        if a.annotator_id is not None:
            by_annotator[a.annotator_id].append(a)
    return {
        "campaign": campaign.pk,
        "batch": batch.pk if batch else None,
        "overall": _figures(anns, volumes),
        "by_batch": [
            {
                "batch_id": bid,
                "name": batches[bid].name,
                "review_state": states.get(bid, "annotating"),
                **_figures(group, volumes),
            }
            for bid, group in sorted(by_batch.items())
        ],
        "by_annotator": [
            {"user_id": uid, "username": names.get(uid, ""), **_figures(group, volumes)}
            for uid, group in sorted(by_annotator.items())
        ],
        "by_checker": _checker_figures(anns, names),
    }

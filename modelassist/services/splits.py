"""The train/validation/test split of a campaign's exports (70/15/15), by institution or by patient.

When a campaign's first cases are given a split, its method is chosen and stored:

- **by institution** when the cases come from three or more institutions: whole institutions go
  to one split, so a model is always tested on hospitals it never saw in training (Topff et al.);
- **by patient** otherwise: every scan of a patient goes to one split, so a single-site team can
  still test on held-out patients (of the same hospital, not of another one).

Once given, a unit's (institution's or patient's) split and a case's number and split never
change: later exports only add, and a new scan of a known patient joins that patient's split.
New units are placed in an order fixed by the campaign's stored seed (sha256 of seed and slug
or pseudonym), each to:

1. the first empty split in the order train, test, validation (one unit trains; two can also
   test; the third validates), then
2. the split furthest below its target share of cases, counting every case exported so far
   and the new units' cases (ties: train, test, validation).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections import Counter
from collections.abc import Callable, Iterable

from django.conf import settings

from core.models import Campaign, Scan
from modelassist.models import (
    SPLIT_SHARES,
    DatasetExport,
    ExportCase,
    InstitutionSplit,
    Split,
    SplitMethod,
    SplitPlan,
)

FILL_ORDER = (Split.TRAIN, Split.TEST, Split.VALIDATION)
TIE_ORDER = (Split.TRAIN, Split.TEST, Split.VALIDATION)  # ties favour the held-out test split
# Institution-level needs a train, a test and a validation institution.
MIN_INSTITUTIONS = 3

METHOD_TEXT: dict[str, str] = {
    SplitMethod.INSTITUTION: "institution-level: all cases of an institution are in one split (no "
    "institution in two), so the test figures are on hospitals the model never saw in training",
    SplitMethod.PATIENT: "patient-level: fewer than three institutions contributed cases, so every scan "
    "of a patient is in one split; the test figures are on held-out patients of the same "
    "hospital, not on another hospital",
}
TESTED_ON: dict[str, str] = {
    SplitMethod.INSTITUTION: "tested on institutions it never saw in training",
    SplitMethod.PATIENT: "tested on held-out patients of the same hospital, not on another hospital",
}


def split_plan(campaign: Campaign) -> SplitPlan:
    plan, _ = SplitPlan.objects.get_or_create(campaign=campaign, defaults={"seed": secrets.randbits(62)})
    return plan


def institution_order_key(seed: int, slug: str) -> str:
    return hashlib.sha256(f"{seed}:{slug}".encode()).hexdigest()


def min_test_cases() -> int:
    """Fewer test cases decide nothing: one lucky or unlucky case swings the mean Dice (default 5)."""
    return settings.CURATECT_MIN_TEST_CASES


def more_scans_for_test(test_cases: int) -> int:
    """About how many more approved scans give min_test_cases() test cases, at the test share (15 %)."""
    missing = min_test_cases() - test_cases
    return max(0, math.ceil(missing / SPLIT_SHARES[Split.TEST] - 1e-9))


def assign_cases(
    campaign: Campaign, scans: Iterable[Scan], export: DatasetExport | None
) -> dict[int, ExportCase]:
    """Case rows (number and split) for these scans; new scans, patients and institutions get
    theirs. Call inside the export's transaction, with the campaign row locked."""
    scans = list(scans)
    cases = {c.scan_id: c for c in ExportCase.objects.filter(campaign=campaign, scan__in=scans)}
    new_scans = [s for s in scans if s.pk not in cases]
    if not new_scans:
        return cases
    plan = _plan_with_method(campaign, new_scans)
    if plan.method == SplitMethod.INSTITUTION:
        split_of = _unit_splits(
            campaign, plan.seed, new_scans, _institution_unit, _known_institutions(campaign)
        )
    else:
        split_of = _unit_splits(campaign, plan.seed, new_scans, _patient_unit, _known_patients(campaign))
    number = max(ExportCase.objects.filter(campaign=campaign).values_list("number", flat=True), default=0)
    for scan in sorted(new_scans, key=lambda s: s.pk):
        number += 1
        cases[scan.pk] = ExportCase.objects.create(
            campaign=campaign, scan=scan, number=number, split=split_of[scan.pk], first_export=export
        )
    return cases


def _plan_with_method(campaign: Campaign, new_scans: list[Scan]) -> SplitPlan:
    plan = split_plan(campaign)
    if not plan.method:
        institutions = {s.study.institution_id for s in new_scans}
        institutions |= set(
            ExportCase.objects.filter(campaign=campaign).values_list("scan__study__institution_id", flat=True)
        )
        plan.method = (
            SplitMethod.INSTITUTION if len(institutions) >= MIN_INSTITUTIONS else SplitMethod.PATIENT
        )
        plan.save(update_fields=["method"])
    return plan


# A unit is what goes to one split whole: (id, order key) of an institution or a patient.
Unit = Callable[[Scan], tuple[int, str]]


def _institution_unit(scan: Scan) -> tuple[int, str]:
    return scan.study.institution_id, scan.study.institution.slug


def _patient_unit(scan: Scan) -> tuple[int, str]:
    return scan.study.patient_id, scan.study.patient.pseudonym


def _known_institutions(campaign: Campaign) -> dict[int, str]:
    return dict(InstitutionSplit.objects.filter(campaign=campaign).values_list("institution_id", "split"))


def _known_patients(campaign: Campaign) -> dict[int, str]:
    # The patient's split is the one of its scans already given one (all in one split).
    return dict(
        ExportCase.objects.filter(campaign=campaign)
        .values_list("scan__study__patient_id", "split")
        .distinct()
    )


def _unit_splits(
    campaign: Campaign, seed: int, new_scans: list[Scan], unit: Unit, known: dict[int, str]
) -> dict[int, str]:
    """The split of each new scan (by scan pk): its unit's, a new unit placed as the module says."""
    unit_of = {s.pk: unit(s) for s in new_scans}
    incoming = Counter(uid for uid, _ in unit_of.values())
    keys = dict(unit_of.values())
    unplaced = [u for u in incoming if u not in known]
    if unplaced:
        cases_per_split = Counter(
            ExportCase.objects.filter(campaign=campaign).values_list("split", flat=True)
        )
        for uid, n in incoming.items():  # new cases of known units count too
            if uid in known:
                cases_per_split[known[uid]] += n
        total = sum(cases_per_split.values()) + sum(incoming[u] for u in unplaced)
        used = set(cases_per_split) | set(known.values())
        for uid in sorted(unplaced, key=lambda u: institution_order_key(seed, keys[u])):
            split = _choose(cases_per_split, used, total)
            if unit is _institution_unit:
                InstitutionSplit.objects.create(campaign=campaign, institution_id=uid, split=split)
            known[uid] = split
            used.add(split)
            cases_per_split[split] += incoming[uid]
    return {pk: known[uid] for pk, (uid, _) in unit_of.items()}


def _choose(cases_per_split: Counter, used: set[str], total: int) -> str:
    for split in FILL_ORDER:
        if split not in used:
            return split
    deficits = {s: SPLIT_SHARES[s] * total - cases_per_split[s] for s in TIE_ORDER}
    return max(TIE_ORDER, key=lambda s: (deficits[s], -TIE_ORDER.index(s)))

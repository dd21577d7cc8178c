"""The institution-level train/validation/test split of a campaign's exports (70/15/15).

Whole institutions go to one split, so a model is always tested on hospitals it never saw
in training. Once given, an institution's split and a case's number and split never change:
later exports only add. New institutions are placed in an order fixed by the campaign's
stored seed (sha256 of seed and slug), each to:

1. the first empty split in the order train, test, validation (one institution trains;
   two can also test; the third validates), then
2. the split furthest below its target share of cases, counting every case exported so far
   and the new institutions' cases (ties: train, test, validation).
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Iterable

from core.models import Campaign, Scan
from modelassist.models import SPLIT_SHARES, DatasetExport, ExportCase, InstitutionSplit, Split, SplitPlan

FILL_ORDER = (Split.TRAIN, Split.TEST, Split.VALIDATION)
TIE_ORDER = (Split.TRAIN, Split.TEST, Split.VALIDATION)  # ties favour the held-out test split


def split_plan(campaign: Campaign) -> SplitPlan:
    plan, _ = SplitPlan.objects.get_or_create(campaign=campaign, defaults={"seed": secrets.randbits(62)})
    return plan


def institution_order_key(seed: int, slug: str) -> str:
    return hashlib.sha256(f"{seed}:{slug}".encode()).hexdigest()


def assign_cases(
    campaign: Campaign, scans: Iterable[Scan], export: DatasetExport | None
) -> dict[int, ExportCase]:
    """Case rows (number and split) for these scans; new scans and institutions get theirs.
    Call inside the export's transaction, with the campaign row locked."""
    scans = list(scans)
    cases = {c.scan_id: c for c in ExportCase.objects.filter(campaign=campaign, scan__in=scans)}
    new_scans = [s for s in scans if s.pk not in cases]
    if not new_scans:
        return cases
    splits = _institution_splits(campaign, new_scans)
    number = max(ExportCase.objects.filter(campaign=campaign).values_list("number", flat=True), default=0)
    for scan in sorted(new_scans, key=lambda s: s.pk):
        number += 1
        cases[scan.pk] = ExportCase.objects.create(
            campaign=campaign,
            scan=scan,
            number=number,
            split=splits[scan.study.institution_id],
            first_export=export,
        )
    return cases


def _institution_splits(campaign: Campaign, new_scans: list[Scan]) -> dict[int, str]:
    known = dict(InstitutionSplit.objects.filter(campaign=campaign).values_list("institution_id", "split"))
    incoming = Counter(s.study.institution_id for s in new_scans)
    unplaced = [i for i in incoming if i not in known]
    if unplaced:
        cases_per_split = Counter(
            ExportCase.objects.filter(campaign=campaign).values_list("split", flat=True)
        )
        for inst_id, n in incoming.items():  # new cases of known institutions count too
            if inst_id in known:
                cases_per_split[known[inst_id]] += n
        total = sum(cases_per_split.values()) + sum(incoming[i] for i in unplaced)
        seed = split_plan(campaign).seed
        slugs = {s.study.institution_id: s.study.institution.slug for s in new_scans}
        for inst_id in sorted(unplaced, key=lambda i: institution_order_key(seed, slugs[i])):
            split = _choose(cases_per_split, {v for v in known.values()}, total)
            InstitutionSplit.objects.create(campaign=campaign, institution_id=inst_id, split=split)
            known[inst_id] = split
            cases_per_split[split] += incoming[inst_id]
    return known


def _choose(cases_per_split: Counter, used: set[str], total: int) -> str:
    for split in FILL_ORDER:
        if split not in used:
            return split
    deficits = {s: SPLIT_SHARES[s] * total - cases_per_split[s] for s in TIE_ORDER}
    return max(TIE_ORDER, key=lambda s: (deficits[s], -TIE_ORDER.index(s)))

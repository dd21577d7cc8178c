"""Curated data made the way a team makes it, through the real services: the demo's seed and the
benches approve their phantom batches here, so a batch they report on went through every QC step
(save, submit, two blind checks, the senior's spot check, approval)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.models import Batch, Campaign, Scan, User


def curate_batches(
    campaign: Campaign,
    *,
    manager: User,
    annotator: User,
    labelled: Sequence[tuple[Scan, np.ndarray, str]],
    name: str = "",
    annotate_s: float = 60.0,
    check_s: float = 0.0,
    spot_s: float = 0.0,
) -> list[Batch]:
    """Batches of the campaign's size: the annotator saves each scan's labels (the phantom's
    truth) with its diagnosis and submits, both checkers the submit drew pass, the senior passes
    the spot checks. Raises RuntimeError when a batch does not end approved (a QC rule changed
    under the caller: its figures would not be of curated data)."""
    from annotation.services import revision_save
    from core.services.batches import batch_build
    from qc.models import BatchReview, Check, SpotCheck, Verdict
    from qc.services import check_record, revision_submit, spot_check_record

    batches = []
    for start in range(0, len(labelled), campaign.batch_size):
        chunk = labelled[start : start + campaign.batch_size]
        scans = [scan for scan, _, _ in chunk]
        batch = batch_build(
            actor=manager, campaign=campaign, annotator=annotator, scan_ids=[s.pk for s in scans], name=name
        )
        for scan, labels, diagnosis in chunk:
            revision = revision_save(
                actor=annotator,
                campaign=campaign,
                scan=scan,
                parent_id=None,
                full=labels,
                scan_labels={"diagnosis": diagnosis},
                time_spent_s=annotate_s,
            )
            revision_submit(actor=annotator, campaign=campaign, scan=scan, revision_id=revision.pk)
        for check in Check.objects.filter(annotation__scan__in=scans, verdict=Verdict.PENDING).order_by("pk"):
            check_record(actor=check.checker, check=check, verdict="pass", time_spent_s=check_s)
        for spot in SpotCheck.objects.filter(review__batch=batch, verdict=Verdict.PENDING).order_by("pk"):
            spot_check_record(actor=spot.senior, spot_check=spot, verdict="pass", time_spent_s=spot_s)
        state = BatchReview.objects.get(batch=batch).state
        if state != "approved":
            raise RuntimeError(f"batch {batch.pk} ended {state!r} after every check passed, not approved")
        batches.append(batch)
    return batches

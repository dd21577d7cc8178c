"""A campaign's curated data made through the real services, for the export, retraining and
end-to-end tests: phantom scans of several institutions imported, and batches annotated,
checked, spot-checked and approved. Celery tasks can run in-process (eager_celery)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from tests.conftest import make_series, truth_of

LABELS = {"diagnosis": "COVID-19"}


@contextlib.contextmanager
def eager_celery():
    """Celery tasks run in-process; send_task by name (as the core and QC send) runs the task too."""
    import modelassist.tasks  # noqa: F401 - registers the tasks (a worker autodiscovers them)
    from platform_core.celery import app

    real_send_task = app.send_task
    app.conf.task_always_eager = True
    app.send_task = lambda name, args=None, kwargs=None, **opts: app.tasks[name].apply_async(
        args, kwargs, **opts
    )
    try:
        yield app
    finally:
        app.conf.task_always_eager = False
        app.send_task = real_send_task


def institution(slug: str):
    from core.models import Institution

    return Institution.objects.get_or_create(slug=slug, defaults={"name": slug.title()})[0]


def import_scans(
    cast, tmp_path: Path, inst_slug: str, n: int, *, first_seed: int, slices: int = 8, size: int = 32
):
    """n phantom series of one institution imported into the campaign: [(scan, truth lesions)]."""
    from core.models import Scan
    from demo.phantom import load_ground_truth
    from imaging.ingest.service import ingest_path

    inst = institution(inst_slug)
    cast.campaign.shared_with.add(inst)
    folder = tmp_path / f"{inst_slug}-{first_seed}"
    truths = {}
    for i in range(n):
        series = make_series(
            folder, slices=slices, size=size, seed=first_seed + i, patient=f"{inst_slug}-{i}"
        )
        truths[f"{inst_slug}-{i}"] = load_ground_truth(truth_of(series)).lesions
    report = ingest_path(folder, institution=inst, campaign_id=cast.campaign.pk)
    assert not report.rejected_files and not report.rejected_series, report.as_dict()
    scans = Scan.objects.filter(pk__in=report.scans_created).select_related("study__patient").order_by("pk")
    # The re-identification table links each scan back to its phantom's truth.
    return [(scan, truths[scan.study.patient.original_patient_id]) for scan in scans]


def label_volume(truth: np.ndarray, shape) -> np.ndarray:
    """The truth, with a small ground-glass block added where a tiny phantom has no lesion."""
    labels = truth.astype(np.uint8).copy()
    if not labels.any():
        z, y, x = (n // 2 for n in shape)
        labels[z, y - 1 : y + 2, x - 1 : x + 2] = 1
    return labels


def approve(cast, scans_and_labels, *, annotator=None, scan_labels=None) -> object:
    """A batch of these scans annotated (labels as given), checked by two checkers, spot-checked
    by the senior and approved, all through the real services. Returns the batch."""
    from annotation.models import Annotation
    from annotation.services import revision_save
    from core.services.batches import batch_build
    from qc.models import Check, SpotCheck, Verdict
    from qc.services import check_record, revision_submit, spot_check_record

    annotator = annotator or cast.annotator
    batch = batch_build(
        actor=cast.manager,
        campaign=cast.campaign,
        annotator=annotator,
        scan_ids=[s.pk for s, _ in scans_and_labels],
    )
    for scan, labels in scans_and_labels:
        head = (
            Annotation.objects.filter(campaign=cast.campaign, scan=scan)
            .values_list("head_id", flat=True)
            .first()
        )
        rev = revision_save(
            actor=annotator,
            campaign=cast.campaign,
            scan=scan,
            parent_id=head,
            full=labels,
            scan_labels=(scan_labels or {}).get(scan.pk, LABELS),  # by scan id
            time_spent_s=60,
        )
        revision_submit(actor=annotator, campaign=cast.campaign, scan=scan, revision_id=rev.pk)
    for check in Check.objects.filter(
        annotation__scan__in=[s for s, _ in scans_and_labels], verdict=Verdict.PENDING
    ).order_by("pk"):
        check_record(actor=check.checker, check=check, verdict="pass", time_spent_s=30)
    for sc in SpotCheck.objects.filter(review__batch=batch, verdict=Verdict.PENDING).order_by("pk"):
        spot_check_record(actor=sc.senior, spot_check=sc, verdict="pass", time_spent_s=20)
    assert batch.review.state == "approved", batch.review.state
    return batch


def run_export(cast):
    from modelassist.services.export import export_request, export_run

    export = export_request(actor=cast.manager, campaign=cast.campaign, enqueue=False)
    return export_run(export.pk)

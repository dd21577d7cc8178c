"""QC test helpers: cheap scans (rows only: QC never reads pixels), batches, and one-line
steps of the workflow through the real services."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

SHAPE = (8, 32, 32)  # (slices, rows, columns): tiny, so a 50-scan campaign runs in seconds
LABELS = {"diagnosis": "COVID-19"}
_uid = itertools.count(1)


def make_scans(campaign, n: int, *, shape=SHAPE) -> list:
    """n scans in the campaign, created as rows (no DICOM): the QC path only needs their shape."""
    from core.models import CampaignScan, PatientPseudonym, Scan, Study

    scans = []
    for _ in range(n):
        i = next(_uid)
        patient = PatientPseudonym.objects.create(
            institution=campaign.institution,
            original_id_hash=f"h{i}",
            pseudonym=f"QC-{i}",
            date_offset_days=0,
        )
        study = Study.objects.create(institution=campaign.institution, patient=patient, study_uid=f"2.25.{i}")
        scan = Scan.objects.create(
            study=study,
            series_uid=f"2.25.9{i}",
            rows=shape[1],
            columns=shape[2],
            slices=shape[0],
            spacing=[0.7, 0.7, 1.0],
            origin=[0, 0, 0],
            direction=[1, 0, 0, 0, 1, 0, 0, 0, 1],
            storage_dir=f"scans/{i}",
            volume_sha256="0" * 64,
        )
        CampaignScan.objects.create(campaign=campaign, scan=scan)
        scans.append(scan)
    return scans


def make_batch(campaign, manager, annotator, scans):
    from core.services.batches import batch_build

    return batch_build(actor=manager, campaign=campaign, scan_ids=[s.pk for s in scans], annotator=annotator)


def cube(z=(2, 6), y=(8, 16), x=(8, 16), value=1, shape=SHAPE) -> np.ndarray:
    vol = np.zeros(shape, dtype=np.uint8)
    vol[z[0] : z[1], y[0] : y[1], x[0] : x[1]] = value
    return vol


def head_id(campaign, scan):
    from annotation.models import Annotation

    a = Annotation.objects.filter(campaign=campaign, scan=scan).first()
    return a.head_id if a else None


def save(annotator, campaign, scan, volume=None, *, labels=LABELS, time_spent_s=0.0):
    from annotation.services import revision_save

    return revision_save(
        actor=annotator,
        campaign=campaign,
        scan=scan,
        parent_id=head_id(campaign, scan),
        full=cube() if volume is None else volume,
        scan_labels=labels,
        time_spent_s=time_spent_s,
    )


def submit(annotator, campaign, scan):
    from qc.services import revision_submit

    return revision_submit(actor=annotator, campaign=campaign, scan=scan, revision_id=head_id(campaign, scan))


def finding(kind="boundary", z=3, xy=(10, 12), text="edge too tight"):
    return {"slice": z, "position": list(xy), "kind": kind, "text": text}


def open_checks(campaign, scan):
    """The checks of the scan's latest round, slot A first."""
    from qc.models import Check

    checks = Check.objects.filter(annotation__campaign=campaign, annotation__scan=scan).order_by(
        "-round", "slot"
    )
    latest = checks.first()
    return list(checks.filter(round=latest.round).order_by("slot")) if latest else []


def decide(check, verdict, *, time_spent_s=0.0, findings=None):
    from qc.services import check_record

    if findings is None:
        findings = [finding()] if verdict == "fail" else []
    return check_record(
        actor=check.checker, check=check, verdict=verdict, findings=findings, time_spent_s=time_spent_s
    )


@pytest.fixture
def scans_of(cast):
    return lambda n: make_scans(cast.campaign, n)


@pytest.fixture
def sent_tasks(monkeypatch):
    """Celery tasks sent by name (e.g. retraining), recorded instead of published."""
    from platform_core.celery import app

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args=None, **kw: sent.append((name, args, kw)))
    return sent

"""Dataset export (DESIGN step 8): the curated revisions of approved batches as an immutable,
versioned folder MEDIA_ROOT/exports/<campaign>/v<N>/ in the nnU-Net v2 raw layout, with DICOM
SEG, dataset.json, splits_final.json and a manifest of checksums and provenance.

Everything is written into a temporary folder next to the versions and renamed into place
in the transaction that gives the version number; a failure removes the folder, so an export
is there whole or not at all. The content hash covers the curated content (cases, splits,
revisions, label and image checksums), so the same curated data gives the same hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from annotation import storage
from annotation.models import Revision, RevisionSource
from annotation.services import revision_labels
from core.api_errors import Conflict, DomainError
from core.jobs.services import job_claim, job_fail, job_finish, job_progress, reason_of
from core.models import Campaign, User
from core.services.audit import audit_record
from modelassist.models import SPLIT_SHARES, DatasetExport, ExportCase, JobStatus, Split, SplitMethod
from modelassist.selectors import media_path, require_manager, scan_volume
from modelassist.services import export_archive, export_files, splits
from platform_core.celery import task_named
from qc.models import BatchReviewState, Check, CuratedRevision, SpotCheck, Verdict

log = logging.getLogger(__name__)

EXPORTS_DIR = "exports"
MANIFEST = "manifest.json"
FORMAT = "curatect-export/1"
# A running export not heard of for this long lost its worker; running it again starts over.
STALE_RUNNING = dt.timedelta(hours=2)
VALIDATION_CHOICE = (
    "Validation cases are stored in imagesTr/labelsTr with the training cases (nnU-Net keeps every "
    "non-test case there); they are used only for early stopping. Each case's split, and "
    "splits_final.json (one fold: train/val), say which is which. Test cases are in imagesTs/labelsTs."
)

Progress = Callable[[float, str], None]


def curated_rows(campaign: Campaign) -> QuerySet[CuratedRevision]:
    """The current curated revision of every scan of an approved batch of the campaign."""
    return (
        CuratedRevision.objects.filter(
            annotation__campaign=campaign, withdrawn_at__isnull=True, review__state=BatchReviewState.APPROVED
        )
        .select_related("revision__author", "annotation__scan__study__institution", "approved_by")
        .order_by("annotation__scan_id")
    )


def exports_root(campaign: Campaign) -> Path:
    return media_path(f"{EXPORTS_DIR}/{campaign.slug}")


def export_request(*, actor: User | None, campaign: Campaign, enqueue: bool = True) -> DatasetExport:
    """A data manager asks for a new dataset version; the `train` queue writes it (enqueue=False:
    the caller runs export_run itself, e.g. the training job or the management command)."""
    if actor is not None:
        require_manager(actor, campaign, "export datasets")
    if not curated_rows(campaign).exists():
        raise DomainError(
            "nothing to export yet: no approved batch of this campaign has curated labels",
            code="nothing_to_export",
        )
    with transaction.atomic():
        export = DatasetExport.objects.create(campaign=campaign, created_by=actor)
        audit_record(
            actor=actor,
            actor_label="" if actor else "system",
            action="export_request",
            obj=export,
            campaign=campaign,
            to_state=JobStatus.QUEUED,
        )
        if enqueue:
            export_id = export.pk
            transaction.on_commit(lambda: _send(export_id))
    return export


def _send(export_id: int) -> None:
    # Found by name: the tasks module imports the services, so the services never import it.
    task_named("modelassist.tasks.export_dataset").delay(export_id)


def export_run(export_id: int, progress: Progress | None = None, *, worker: str = "") -> DatasetExport:
    """Write and publish the export. Safe to run twice: a finished export is returned as it is.
    A failure is recorded on the row (status failed, error) and leaves no files."""
    export = DatasetExport.objects.select_related("campaign", "created_by").get(pk=export_id)
    # A running export not heard of for STALE_RUNNING lost its worker: take it over.
    if not job_claim(
        export, worker=worker, stale_after=STALE_RUNNING, message="collecting curated revisions"
    ):
        export.refresh_from_db()
        return export
    root = exports_root(export.campaign)
    for leftover in root.glob(f".tmp-{export.pk}-*"):  # a lost worker's half-written folder
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = root / f".tmp-{export.pk}-{uuid.uuid4().hex[:8]}"
    try:
        cases, files = _write_cases(export, tmp, progress or (lambda f, m: None))
        _publish(export, tmp, cases, files)
    except Exception as exc:  # recorded on the row for the data manager; nothing stays on disk
        log.exception("export %s failed", export.pk)
        shutil.rmtree(tmp, ignore_errors=True)
        job_fail(
            export,
            exc,
            action="export_failed",
            from_states=[JobStatus.RUNNING],
            audit={"campaign": export.campaign_id, "error": reason_of(exc)[:500]},
        )
    export.refresh_from_db()
    return export


def _report(export: DatasetExport, progress: Progress, fraction: float, message: str) -> None:
    job_progress(export, fraction, message)
    progress(fraction, message)


# ----------------------------------------------------------------------------- writing


def _write_cases(export: DatasetExport, tmp: Path, progress: Progress) -> tuple[list[dict], dict[str, str]]:
    campaign = export.campaign
    rows = list(curated_rows(campaign))
    if not rows:
        raise DomainError(
            "nothing to export: no approved batch of this campaign has curated labels",
            code="nothing_to_export",
        )
    with transaction.atomic():
        Campaign.objects.select_for_update().get(pk=campaign.pk)  # one split assigner at a time
        case_rows = splits.assign_cases(campaign, [r.annotation.scan for r in rows], export=None)
    classes = {int(c["value"]): str(c["name"]) for c in campaign.label_schema["classes"]}
    tmp.mkdir(parents=True)
    rows.sort(key=lambda r: case_rows[r.annotation.scan_id].number)
    cases = []
    for i, row in enumerate(rows):
        case = case_rows[row.annotation.scan_id]
        _report(export, progress, 0.95 * i / len(rows), f"writing {case.case_id} ({i + 1} of {len(rows)})")
        cases.append(_write_case(tmp, row, case, classes))
    _write_json(tmp / "dataset.json", _dataset_json(campaign, classes, cases))
    _write_json(tmp / "splits_final.json", _splits_final(cases))
    files = {
        str(p.relative_to(tmp)): export_files.file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()
    }
    return cases, files


def _write_case(tmp: Path, row: CuratedRevision, case: ExportCase, classes: dict[int, str]) -> dict[str, Any]:
    scan, revision = row.annotation.scan, row.revision
    hu = scan_volume(scan)
    if hashlib.sha256(hu.data.cast("B")).hexdigest() != scan.volume_sha256:
        raise ValueError(f"the volume file of scan {scan.pk} changed since import (sha256 differs)")
    labels = revision_labels(revision)
    label_sha = storage.raw_sha256(labels)
    training_side = case.split != Split.TEST
    image_rel = f"{'imagesTr' if training_side else 'imagesTs'}/{case.case_id}_0000.nii.gz"
    label_rel = f"{'labelsTr' if training_side else 'labelsTs'}/{case.case_id}.nii.gz"
    seg_rel = f"seg/{case.case_id}.dcm"
    export_files.write_nifti(hu, scan, tmp / image_rel)
    export_files.write_nifti(labels, scan, tmp / label_rel)
    segments = export_files.write_seg(
        scan, labels, classes, tmp / seg_rel, label_sha256=label_sha, content_date=row.curated_at
    )
    return {
        "case": case.case_id,
        "scan_id": scan.pk,
        "series_uid": scan.series_uid,
        "study_uid": scan.study.study_uid,
        "patient": scan.study.patient.pseudonym,
        "institution": scan.study.institution.slug,
        "split": case.split,
        "revision_id": revision.pk,
        "revision_number": revision.number,
        "scan_labels": revision.scan_labels,
        "voxel_counts": revision.voxel_counts,
        "label_sha256": label_sha,
        "label_blob_sha256": revision.label_sha256,
        "image_sha256": scan.volume_sha256,
        "shape_zyx": list(scan.shape),
        "spacing_mm_xyz": [float(v) for v in scan.spacing],
        "slice_gaps": scan.gaps,
        "image": image_rel,
        "label": label_rel,
        "seg": seg_rel if segments else None,
        "seg_segments": {str(k): v for k, v in (segments or {}).items()},
        "seg_note": "" if segments else "no voxel is labelled: a DICOM SEG needs at least one segment",
        **_provenance(row),
    }


def _provenance(row: CuratedRevision) -> dict[str, Any]:
    annotation, revision = row.annotation, row.revision
    checks = list(
        Check.objects.filter(annotation=annotation).select_related("checker").order_by("round", "slot")
    )
    spot = (
        SpotCheck.objects.filter(annotation=annotation, revision=revision, verdict=Verdict.PASS)
        .select_related("senior")
        .order_by("-pk")
        .first()
    )
    authors = Revision.objects.filter(
        annotation=annotation, source=RevisionSource.HUMAN, author__isnull=False
    )
    return {
        "annotator": revision.author.username if revision.author else None,
        "annotators": sorted(set(authors.values_list("author__username", flat=True))),
        "checkers": [
            {"username": c.checker.username, "slot": c.slot, "round": c.round, "verdict": c.verdict}
            for c in checks
            if c.revision_id == revision.pk
        ],
        "senior": spot.senior.username if spot and spot.senior else None,
        "spot_checked": spot is not None,
        "qc_rounds": max((c.round for c in checks), default=0),
        "approved_by": row.approved_by.username if row.approved_by else None,
        "curated_at": row.curated_at.isoformat(),
    }


def _dataset_json(campaign: Campaign, classes: dict[int, str], cases: list[dict]) -> dict[str, Any]:
    return {
        "name": campaign.slug,
        "description": f"{campaign.name}: curated lesion labels exported by CurateCT",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **{name: value for value, name in sorted(classes.items())}},
        "numTraining": sum(1 for c in cases if c["split"] != Split.TEST),
        "numTest": sum(1 for c in cases if c["split"] == Split.TEST),
        "file_ending": ".nii.gz",
    }


def _splits_final(cases: list[dict]) -> list[dict[str, list[str]]]:
    return [
        {
            "train": [c["case"] for c in cases if c["split"] == Split.TRAIN],
            "val": [c["case"] for c in cases if c["split"] == Split.VALIDATION],
        }
    ]


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def content_sha256(campaign: Campaign, cases: list[dict]) -> str:
    """The hash of the curated content: same cases, splits, revisions and voxels → same hash."""
    content = {
        "campaign": campaign.slug,
        "classes": campaign.label_schema["classes"],
        "cases": [
            {k: c[k] for k in ("case", "series_uid", "split", "revision_id", "label_sha256", "image_sha256")}
            for c in cases
        ],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ----------------------------------------------------------------------------- publishing


def _publish(export: DatasetExport, tmp: Path, cases: list[dict], files: dict[str, str]) -> None:
    campaign = export.campaign
    digest = content_sha256(campaign, cases)
    counts = Counter(c["split"] for c in cases)
    summary = {
        "cases": len(cases),
        "splits": {s: counts[s] for s in Split.values},
        **_split_summary(campaign, cases),
        "bytes": sum((tmp / f).stat().st_size for f in files),
    }
    final: Path | None = None
    try:
        with transaction.atomic():
            Campaign.objects.select_for_update().get(pk=campaign.pk)
            version = (
                DatasetExport.objects.filter(campaign=campaign).aggregate(v=Max("version"))["v"] or 0
            ) + 1
            final = exports_root(campaign) / f"v{version}"
            if final.exists():  # left by a publish whose row never committed: it was never published
                shutil.rmtree(final)
            _write_json(tmp / MANIFEST, _manifest(export, version, digest, cases, files, summary))
            tmp.rename(final)
            if not job_finish(
                export,
                version=version,
                path=str(final.relative_to(media_path(""))),
                content_sha256=digest,
                summary=summary,
                message="done",
                error="",
            ):
                # Failed meanwhile (the sweep took it from a worker it thought lost): this
                # version is not published, and the rollback gives its number back.
                raise Conflict(f"export {export.pk} is no longer running", code="export_not_running")
            ExportCase.objects.filter(campaign=campaign, first_export__isnull=True).update(
                first_export=export
            )
            audit_record(
                actor=export.created_by,
                actor_label="" if export.created_by else "system",
                action="export_publish",
                obj=export,
                campaign=campaign,
                from_state=JobStatus.RUNNING,
                to_state=JobStatus.DONE,
                version=version,
                content_sha256=digest,
                cases=len(cases),
            )
    except BaseException:
        if (
            final is not None
            and final.exists()
            and not DatasetExport.objects.filter(pk=export.pk, status=JobStatus.DONE).exists()
        ):
            shutil.rmtree(final, ignore_errors=True)
        raise
    _archive_size_store(export)


def _archive_size_store(export: DatasetExport) -> None:
    """The download (zip) size next to the unpacked one, for the page (issue #17 §5). Counted
    after the commit, outside the lock: deflating the whole export takes seconds."""
    export.refresh_from_db(fields=["version", "path", "summary"])
    summary = {**export.summary, "archive_bytes": export_archive.export_archive_bytes(export)}
    DatasetExport.objects.filter(pk=export.pk).update(summary=summary)


def _split_summary(campaign: Campaign, cases: list[dict]) -> dict[str, Any]:
    """How the cases are split, said plainly: by institution, or by patient (same hospital)."""
    method = splits.split_plan(campaign).method
    out: dict[str, Any] = {"split_method": method, "tested_on": splits.TESTED_ON[method]}
    if method == SplitMethod.INSTITUTION:
        out["institutions"] = {c["institution"]: c["split"] for c in cases}
    else:
        patients: dict[str, set[str]] = {s: set() for s in Split.values}
        for c in cases:
            patients[c["split"]].add(c["patient"])
        out["patients"] = {s: len(p) for s, p in patients.items()}
    return out


def _manifest(
    export: DatasetExport, version: int, digest: str, cases: list[dict], files: dict[str, str], summary: dict
) -> dict[str, Any]:
    campaign = export.campaign
    plan = splits.split_plan(campaign)
    return {
        "format": FORMAT,
        "campaign": {"id": campaign.pk, "slug": campaign.slug, "name": campaign.name},
        "export_id": export.pk,
        "version": version,
        "created_at": timezone.now().isoformat(),
        "created_by": export.created_by.username if export.created_by else None,
        "content_sha256": digest,
        "content_sha256_covers": "campaign slug, label classes, and per case: case id, series UID, split, "
        "revision id, label sha256, image sha256 (sha256 of canonical JSON)",
        "label_schema": campaign.label_schema,
        "layout": "nnU-Net v2 raw dataset (imagesTr, labelsTr, imagesTs, labelsTs, dataset.json, "
        "splits_final.json); seg/ holds a DICOM SEG (BINARY) per case with labels",
        "geometry": "NIfTI arrays are (x, y, z) = (column, row, slice) of the scan; the affine maps them to "
        "RAS+ mm from the DICOM geometry (LPS negated in x and y; spacing, origin, direction)",
        "label_sha256_of": "the raw uint8 (z, y, x) label volume (C order); label_blob_sha256 is the "
        "platform's storage address of the revision (sha256 of its zstd frame)",
        "image_sha256_of": "the raw int16 (z, y, x) HU volume (C order) built at import",
        "split": {
            "by": plan.method,
            "method": f"{splits.METHOD_TEXT[plan.method]}; a case never changes split in later exports "
            "of the campaign",
            "tested_on": summary["tested_on"],
            "target_shares": SPLIT_SHARES,
            "seed": plan.seed,
            "validation_choice": VALIDATION_CHOICE,
            **{k: summary[k] for k in ("institutions", "patients") if k in summary},
            "cases": summary["splits"],
        },
        "cases": cases,
        "files": files,
    }


def export_manifest(export: DatasetExport) -> dict[str, Any]:
    if export.status != JobStatus.DONE:
        raise Conflict(f"export {export.pk} is {export.status}, not published", code="export_not_ready")
    return json.loads((media_path(export.path) / MANIFEST).read_text())

"""The quantification report (DESIGN step 10): lung and lesion volumes, percent of lung
involved, volumes per class and the CT severity score, per scan and over a patient's scans.

Lungs come from the baseline's lung segmentation of the scan's volume, cached next to
volume.npy under a name holding the volume's sha256 (a re-imported volume gets a new file);
lesions come from a revision's label volume (the head by default). When the hospital supplies
a lobe model (CURATECT_LOBE_MODEL, see modelassist/lobes.py) the score is per lobe, 0-25, and
the lobe map is cached the same way under the model file's sha256 too; otherwise per zone, 0-30.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from django.db.models import QuerySet

from annotation import label_codec
from annotation.models import Annotation, AnnotationState, Revision
from annotation.services import revision_labels
from core.api_errors import DomainError, NotFound
from core.models import Campaign, Scan
from modelassist.baseline import segment_lungs
from modelassist.lobes import LobeModel, LobeModelError, lobe_model, lobe_model_label, lobes_segment
from modelassist.quantify import LOBE_NOTE, quantify
from modelassist.selectors import cached_scan_volume, cranial_first, media_path, scan_volume
from qc.models import CuratedRevision

# Bump when the baseline's lung segmentation changes: old cache files are then not read.
LUNG_CACHE_TAG = "baseline1"
LUNG_METHOD = (
    "lungs from the baseline lung segmentation (thresholding and morphology) of the scan's volume; "
    "lesion voxels just outside that mask count as lung"
)
SEVERITY_BANDS = (
    "per region: 0 none, 1 < 5 %, 2 5–25 %, 3 26–50 %, 4 51–75 %, 5 > 75 % of the region involved"
)


def lung_cache_path(scan: Scan) -> Path:
    return media_path(scan.storage_dir) / f"lungs-{LUNG_CACHE_TAG}-{scan.volume_sha256[:24]}.zst"


def lung_mask_cached(scan: Scan) -> np.ndarray | None:
    """The scan's lung mask if it was computed already (never computes it: the viewer asks
    on every load); None when there is none, or the file is of another shape or damaged."""
    path = lung_cache_path(scan)
    try:
        return label_codec.decode_volume(path.read_bytes(), scan.shape)
    except (OSError, ValueError):
        return None


def lung_mask_store(scan: Scan, lungs: np.ndarray) -> None:
    """Write the lung mask (one zstd frame of the raw uint8 (z, y, x) volume, as label volumes
    are stored) atomically: temp name, then rename, so readers see all or nothing."""
    path = lung_cache_path(scan)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".lungs-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(label_codec.encode_volume(lungs.astype(np.uint8, copy=False)))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LobeModelUnusable(DomainError):
    # The server's configuration, not the request, is at fault: 503 until an administrator fixes it.
    status_code = 503


def lobe_cache_path(scan: Scan, model: LobeModel) -> Path:
    return media_path(scan.storage_dir) / f"lobes-{model.sha256[:16]}-{scan.volume_sha256[:24]}.zst"


def scan_lobes(scan: Scan, model: LobeModel, hu: np.ndarray) -> np.ndarray:
    """The lobe model's lobe map of the scan (z, y, x) uint8, lungmask's labels 0-5; computed
    once per scan and model (minutes on a CPU for a full CT), then read from the cache."""
    path = lobe_cache_path(scan, model)
    if path.exists():
        try:
            return label_codec.decode_volume(path.read_bytes(), scan.shape)
        except ValueError:
            pass  # another shape or a damaged file: segment again
    lobes = lobes_segment(model, hu, scan.spacing, cranial_first(scan))
    _store_atomically(path, lobes)
    return lobes


def _store_atomically(path: Path, volume: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".lobes-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(label_codec.encode_volume(volume.astype(np.uint8, copy=False)))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def report_lobe_model() -> LobeModel | None:
    """The configured lobe model, None for zones; a configured but unusable file is refused
    with its reason (never a silent fall-back to zones: the score would change meaning)."""
    try:
        return lobe_model()
    except LobeModelError as exc:
        raise LobeModelUnusable(str(exc), code="lobe_model_unusable") from exc


def scan_lungs(scan: Scan, hu: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """(lung mask (z, y, x) uint8: 1 right, 2 left; whether it came from the cache)."""
    path = lung_cache_path(scan)
    if path.exists():
        try:
            return label_codec.decode_volume(path.read_bytes(), scan.shape), True
        except ValueError:
            pass  # a cache file of another shape or a damaged one: segment again
    if hu is None:
        hu = scan_volume(scan)
    lungs = segment_lungs(hu, scan.spacing)
    path.unlink(missing_ok=True)
    lung_mask_store(scan, lungs)
    return lungs, False


def report_revision(campaign: Campaign, scan: Scan, which: str | None) -> tuple[Revision, str]:
    """The revision a report reads: the head (default), "curated", or a revision id."""
    annotation = Annotation.objects.filter(campaign=campaign, scan=scan).select_related("head").first()
    if annotation is None or annotation.head is None:
        raise NotFound("this scan has no labels yet, so there is nothing to quantify", code="no_revision")
    if which in (None, "", "head"):
        return annotation.head, "head"
    if which == "curated":
        curated = CuratedRevision.objects.filter(annotation=annotation, withdrawn_at__isnull=True).first()
        if curated is None:
            raise NotFound(
                "this scan has no curated labels yet (its batch is not approved)", code="not_curated"
            )
        return curated.revision, "curated"
    try:
        return annotation.revisions.get(pk=int(which)), "revision"
    except (ValueError, Revision.DoesNotExist) as exc:
        raise NotFound(
            f"revision {which!r} is not a revision of this scan in this campaign", code="no_revision"
        ) from exc


def scan_report(
    campaign: Campaign, scan: Scan, revision: Revision, selected_by: str = "head"
) -> dict[str, Any]:
    model = report_lobe_model()
    hu = cached_scan_volume(scan)
    lungs, cached = scan_lungs(scan, hu)
    lobes = scan_lobes(scan, model, hu) if model is not None else None
    labels = revision_labels(revision)
    classes = {int(c["value"]): str(c["name"]) for c in campaign.label_schema["classes"]}
    other = next((v for v, name in classes.items() if name.lower().startswith("other")), None)
    q = quantify(
        labels,
        lungs,
        scan.spacing,
        hu=hu if other is not None else None,
        lobes=lobes,
        lesion_classes=classes,
        lobe_note=(
            f"Scored {lobe_model_label(model)}: {LOBE_NOTE[0].lower()}{LOBE_NOTE[1:]}" if model else LOBE_NOTE
        ),
        cranial_first=cranial_first(scan),
        other_class=other if other is not None else 0,
    )
    annotation = revision.annotation
    return {
        "scan_id": scan.pk,
        "campaign_id": campaign.pk,
        "patient": scan.study.patient.pseudonym,
        "study_date": scan.study.study_date,
        "spacing_mm": {"x": scan.spacing[0], "y": scan.spacing[1], "z": scan.spacing[2]},
        "labels": {
            "selected_by": selected_by,
            "revision_id": revision.pk,
            "revision_number": revision.number,
            "source": revision.source,
            "author": revision.author_display,
            "created_at": revision.created_at,
            "annotation_state": annotation.state,
            "curated": annotation.state == AnnotationState.CURATED and annotation.head_id == revision.pk,
        },
        "lungs": {"method": LUNG_METHOD, "from_cache": cached},
        "voxel_volume_ml": q["voxel_ml"],
        "lung_volume_ml": q["lung_ml"],
        "lesion_volume_ml": q["lesion_ml"],
        "percent_of_lung_involved": q["percent_involved"],
        "lesion_volume_by_class_ml": q["by_class_ml"],
        "other_opacity_by_hu_ml": (
            None
            if q["by_hu_ml"] is None
            else {
                "ground_glass_like_below_minus_350_hu_ml": q["by_hu_ml"]["ggo_like"],
                "consolidation_like_from_minus_350_hu_ml": q["by_hu_ml"]["consolidation_like"],
            }
        ),
        "region_kind": q["region_kind"],
        "region_note": q["region_note"],
        "regions": [
            {
                "name": r["name"],
                "kind": q["region_kind"],
                "lung_volume_ml": r["lung_ml"],
                "lesion_volume_ml": r["lesion_ml"],
                "percent_involved": r["percent"],
                "severity_score": r["score"],
            }
            for r in q["regions"]
        ],
        "severity_score_total": q["severity_total"],
        "severity_score_max": q["severity_max"],
        "severity_bands": SEVERITY_BANDS,
    }


def patient_reports(campaign: Campaign, scans: QuerySet[Scan], pseudonym: str) -> dict[str, Any]:
    """A patient's serial scans in a campaign, oldest study first, each with its report summary
    (head revision), and the percent of lung involved over time."""
    entries: list[dict[str, Any]] = []
    for scan in scans.select_related("study__patient").order_by("study__study_date", "pk"):
        try:
            revision, _ = report_revision(campaign, scan, None)
        except NotFound:
            entries.append(
                {
                    "scan_id": scan.pk,
                    "study_date": scan.study.study_date,
                    "report": None,
                    "reason": "no labels yet",
                }
            )
            continue
        report = scan_report(campaign, scan, revision)
        entries.append(
            {"scan_id": scan.pk, "study_date": scan.study.study_date, "report": report, "reason": ""}
        )
    return {
        "patient": pseudonym,
        "campaign_id": campaign.pk,
        "scans": entries,
        "percent_of_lung_involved_over_time": [
            {
                "study_date": e["study_date"],
                "scan_id": e["scan_id"],
                "percent_of_lung_involved": e["report"]["percent_of_lung_involved"],
                "lesion_volume_ml": e["report"]["lesion_volume_ml"],
                "severity_score_total": e["report"]["severity_score_total"],
            }
            for e in entries
            if e["report"] is not None
        ],
    }


# ----------------------------------------------------------------------------- classifier


def report_classifier(campaign: Campaign, scan: Scan, viewer: Any) -> dict[str, Any]:
    """The active classifier's class probabilities for the report. Withheld from the scan's
    annotator while it sits in one of their open batches: they choose the diagnosis themselves,
    before any suggestion (no anchoring)."""
    from core.models import BatchItem
    from modelassist.classifier.network import predict_probabilities, prepare_input
    from modelassist.selectors import active_model_version
    from modelassist.services.model_versions import load_version_classifier

    if BatchItem.objects.filter(campaign=campaign, scan=scan, is_open=True, batch__annotator=viewer).exists():
        return {
            "shown": False,
            "reason": "withheld while you annotate this scan: you choose the diagnosis before any suggestion",
        }
    version = active_model_version(campaign)
    model = load_version_classifier(version) if version is not None else None
    if version is None or model is None:
        return {"shown": False, "reason": "the active model version has no scan-level classifier"}
    hu = cached_scan_volume(scan)
    lungs, _ = scan_lungs(scan, hu)
    probabilities = predict_probabilities(model, prepare_input(hu, lungs, model.grid)[None])[0]
    return {
        "shown": True,
        "model_version": version.label,
        "probabilities": {name: float(p) for name, p in zip(model.classes, probabilities, strict=True)},
        "note": "the model's probabilities, not a diagnosis; the curated label is the annotators' call",
    }

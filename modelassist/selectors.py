"""Reads of model assist: volumes on disk, the active model, runs and their progress, scoped
lookups for the API."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from core.models import Batch, Campaign, Scan, User
from core.selectors import batches_visible_to, campaigns_visible_to
from imaging.ingest.store import VOLUME_FILE
from modelassist.models import (
    BASELINE_LABEL,
    PRESEG_FINAL,
    DatasetExport,
    ModelVersion,
    PresegRun,
    PresegScan,
    PresegStatus,
    TrainingRun,
)
from modelassist.permissions import require_manager  # also re-exported: the services import it from here

# ----------------------------------------------------------------------------- files


def media_path(relative: str | Path) -> Path:
    return Path(settings.MEDIA_ROOT) / relative


def scan_volume_path(scan: Scan) -> Path:
    return media_path(scan.storage_dir) / VOLUME_FILE


def scan_volume(scan: Scan) -> np.ndarray:
    """The scan's int16 (z, y, x) HU volume, read from disk (workers do not keep a cache)."""
    path = scan_volume_path(scan)
    if not path.exists():
        raise FileNotFoundError(
            f"the volume file of scan {scan.pk} is missing ({path.name}); re-import the series"
        )
    volume = np.load(path, allow_pickle=False)
    if volume.dtype != np.int16 or volume.shape != scan.shape:
        raise ValueError(
            f"the volume file of scan {scan.pk} holds {volume.dtype} {list(volume.shape)}, "
            f"expected int16 {list(scan.shape)}"
        )
    return volume


def cached_scan_volume(scan: Scan) -> np.ndarray:
    """The volume through the web process's shared LRU cache (read-only): reports and the
    region-growing brush read the same scans."""
    from imaging import volume_cache

    if not scan_volume_path(scan).exists():
        return scan_volume(scan)  # raises with the reason
    return volume_cache.load_volume(scan_volume_path(scan))


def cranial_first(scan: Scan) -> bool:
    """Whether slice 0 is the most cranial one: the slice normal (DICOM LPS, +z is the head)
    points to the feet. Ingest sorts slices along the normal, so for axial CT this is False."""
    return float(scan.direction[8]) < 0


# ----------------------------------------------------------------------------- models


def active_model_version(campaign: Campaign | int) -> ModelVersion | None:
    campaign_id = campaign.pk if isinstance(campaign, Campaign) else campaign
    return ModelVersion.objects.filter(campaign_id=campaign_id, is_active=True).first()


def model_version_out(version: ModelVersion | None) -> dict[str, Any]:
    if version is None:
        return {
            "id": None,
            "name": BASELINE_LABEL,
            "label": BASELINE_LABEL,
            "architecture": "classical thresholding and morphology",
            "is_active": True,
            "metrics": {},
        }
    return {
        "id": version.pk,
        "name": version.name,
        "label": version.label,
        "architecture": version.architecture,
        "sha256": version.sha256,
        "trained_on": (
            {"id": version.trained_on_id, "version": version.trained_on.version}
            if version.trained_on is not None  # no query when trained_on_id is None
            else None
        ),
        "curated_scans": _curated_scans(version),
        "metrics": version.metrics,
        "is_active": version.is_active,
        "activated_at": version.activated_at,
        "created_by": version.created_by.username if version.created_by else None,
        "created_at": version.created_at,
    }


def _curated_scans(version: ModelVersion) -> int | None:
    """The curated scans of the export the version learned from (all its splits: the x of the
    models page's figures over stages); None for an uploaded or federated version."""
    if version.trained_on is None:
        return None
    cases = (version.trained_on.summary or {}).get("cases")
    return int(cases) if cases is not None else None


# ----------------------------------------------------------------------------- access


def managed_campaign(user: User, campaign_id: int, action: str) -> Campaign:
    """A campaign the user sees (else 404) and manages (else 403, with what they tried)."""
    campaign = get_object_or_404(campaigns_visible_to(user), pk=campaign_id)
    require_manager(user, campaign, action)
    return campaign


def exports_visible_to(user: User) -> QuerySet[DatasetExport]:
    return DatasetExport.objects.filter(campaign__in=campaigns_visible_to(user))


def training_runs_visible_to(user: User) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(campaign__in=campaigns_visible_to(user))


def model_versions_visible_to(user: User) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(campaign__in=campaigns_visible_to(user))


def batch_for_user(user: User, batch_id: int) -> Batch:
    return get_object_or_404(batches_visible_to(user).select_related("campaign"), pk=batch_id)


# ----------------------------------------------------------------------------- progress


def preseg_progress(batch: Batch) -> dict[str, Any]:
    """The batch's pre-segmentation as the data manager sees it: counts and one row per scan."""
    run = PresegRun.objects.filter(batch=batch).first()
    if run is None:
        return {"batch_id": batch.pk, "status": "not_started", "counts": {}, "scans": []}
    rows = list(
        PresegScan.objects.filter(run=run)
        .order_by("pk")
        .values(
            "scan_id",
            "status",
            "model_label",
            "model_version_id",
            "revision_id",
            "error",
            "seconds",
            "queued_at",
            "started_at",
            "finished_at",
        )
    )
    counts = Counter(r["status"] for r in rows)
    finished = all(r["status"] in PRESEG_FINAL for r in rows)
    if not finished:
        status = "running" if counts[PresegStatus.RUNNING] or counts[PresegStatus.DONE] else "queued"
    else:
        status = "done_with_failures" if counts[PresegStatus.FAILED] else "done"
    return {
        "batch_id": batch.pk,
        "status": status,
        "attempts": run.attempts,
        "counts": {s: counts[s] for s in PresegStatus.values},
        "total": len(rows),
        "progress": (sum(counts[s] for s in PRESEG_FINAL) / len(rows)) if rows else 1.0,
        "scans": rows,
    }

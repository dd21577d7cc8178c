"""Warm this process's caches for a scan an annotator has just opened (issue #16 §1).

The first region-growing click on a scan needs its decoded CT volume (imaging/volume_cache.py:
~105 MB read from disk at 512×512×200) and the first box save its head labels decoded
(annotation/storage.py). Loaded by that click or save, it waits for them; loaded while the viewer
still fetches its frames and the person scrolls to the lesion, nobody waits. One background
thread per process loads them in order of opening, so a shift arriving at once reads one scan
at a time instead of twenty half-read ones.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.conf import settings

from annotation import storage
from annotation.models import Annotation
from core.models import Scan
from imaging import volume_cache
from imaging.ingest.store import VOLUME_FILE

logger = logging.getLogger(__name__)

_loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="curatect-warm")


def scan_volume_path(scan: Scan) -> Path:
    return Path(settings.MEDIA_ROOT) / scan.storage_dir / VOLUME_FILE


def scan_caches_warm(scan: Scan, annotation: Annotation | None) -> None:
    """Load the scan's volume and the annotation's head labels into this process's caches, in
    the background; returns at once. Cheap when both are warm already."""
    head = annotation.head if annotation is not None else None
    z, y, x = scan.shape
    _loader.submit(_warm, scan_volume_path(scan), head.label_sha256 if head else None, (z, y, x))


def _warm(volume_path: Path, label_sha256: str | None, shape: tuple[int, int, int]) -> None:
    # A warm-up that fails costs the click its load, as before; it must never fail the request.
    try:
        volume_cache.load_volume(volume_path)
        if label_sha256 is not None:
            storage.labels_warm(label_sha256, shape)
    except Exception:
        logger.warning("could not warm the caches for %s", volume_path, exc_info=True)

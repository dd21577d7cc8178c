"""The lung mask the region-growing brush and the viewer's "paint inside lungs only" use.

There is one lung mask per scan: the baseline's lung segmentation that model assist computes
(pre-segmentation by the baseline, or the quantification report) and caches next to the scan's
volume. Model assist sits above annotation, so annotation cannot import it; model assist
registers a reader at start-up (modelassist/apps.py) and annotation asks through here. A scan
whose mask was never computed has none: the viewer says so and paints unrestricted.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from core.models import Scan

LungMaskReader = Callable[[Scan], "np.ndarray | None"]

_reader: LungMaskReader | None = None
# The last few scans' masks as bool, for the grow clicks that follow each other on one scan
# (decoding a 512² × 300 mask costs ~100 ms; the file never changes for one volume).
_CACHE_SIZE = 2
_cache: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
_lock = threading.Lock()


def lung_mask_reader_set(reader: LungMaskReader | None) -> None:
    global _reader
    _reader = reader


def scan_lung_mask(scan: Scan) -> np.ndarray | None:
    """The scan's cached lung mask ((z, y, x) uint8, 0 outside), or None when none exists."""
    return _reader(scan) if _reader is not None else None


def scan_lung_region(scan: Scan) -> np.ndarray | None:
    """The lung mask as a bool (z, y, x) array (both lungs), cached; None when none exists."""
    key = (scan.pk, scan.volume_sha256)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    mask = scan_lung_mask(scan)
    if mask is None:
        return None
    region = mask != 0
    region.flags.writeable = False
    with _lock:
        _cache[key] = region
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return region

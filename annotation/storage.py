"""Content-addressed label storage: one compressed file per distinct label volume.

A file holds one zstd frame of the raw uint8 volume and is named by the sha256 of that
frame: written under a temporary name, renamed into place, never rewritten. Two revisions
with the same labels share one file.

Saves are box edits on top of the head revision, so the head volume of each annotation
being edited stays warm in a small per-process cache. A save *takes* the parent's array
out of the cache (no decode, no copy), edits it and puts it back under the new address;
readers always get their own copy, so no one sees an array change under them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from django.conf import settings

from annotation import label_codec
from core.temporaries import owner_gone, owner_suffix

TMP_PREFIX = ".tmp-"


def _path(sha256: str) -> Path:
    return Path(settings.MEDIA_ROOT) / "labels" / sha256[:2] / f"{sha256}.zst"


class _WarmVolumes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0

    def put(self, sha: str, vol: np.ndarray) -> None:
        limit = getattr(settings, "LABEL_CACHE_BYTES", 512 * 1024**2)
        if vol.nbytes > limit:
            return
        with self._lock:
            if sha in self._items:
                return
            self._items[sha] = vol
            self._bytes += vol.nbytes
            while self._bytes > limit:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes

    def take(self, sha: str) -> np.ndarray | None:
        with self._lock:
            vol = self._items.pop(sha, None)
            if vol is not None:
                self._bytes -= vol.nbytes
            return vol

    def copy_of(self, sha: str) -> np.ndarray | None:
        with self._lock:
            vol = self._items.get(sha)
            if vol is None:
                return None
            self._items.move_to_end(sha)
            return vol.copy()

    def has(self, sha: str) -> bool:
        with self._lock:
            return sha in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


_warm = _WarmVolumes()


def store_labels(vol: np.ndarray) -> str:
    """Store a label volume; returns its address. The array is kept warm: do not modify it after."""
    blob = label_codec.encode_volume(vol)
    sha = hashlib.sha256(blob).hexdigest()
    path = _path(sha)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Named for its owner: a process killed between mkstemp and the rename leaves it, and the
        # sweep at worker start removes it once that process is gone (labels_tmp_sweep).
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=owner_suffix())
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    _warm.put(sha, vol)
    return sha


def labels_tmp_sweep(*, now: float | None = None) -> int:
    """Delete temporary label files whose writer is gone: named for a process of this host that
    no longer runs, or (another host's, or unnamed) untouched for LABEL_TMP_AGE_S. A live
    writer's file is kept. Returns how many went."""
    root = Path(settings.MEDIA_ROOT) / "labels"
    if not root.is_dir():
        return 0
    now = time.time() if now is None else now
    age = getattr(settings, "LABEL_TMP_AGE_S", 3600)
    removed = 0
    for tmp in root.glob(f"*/{TMP_PREFIX}*"):
        try:
            stale = now - tmp.stat().st_mtime > age
        except FileNotFoundError:  # renamed into place meanwhile
            continue
        if owner_gone(tmp.name) or stale:
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def load_blob(sha256: str) -> bytes:
    return _path(sha256).read_bytes()


def load_labels(sha256: str, shape: tuple[int, int, int]) -> np.ndarray:
    """A private, writable copy of a stored label volume."""
    warm = _warm.copy_of(sha256)
    if warm is not None and warm.shape == tuple(shape):
        return warm
    return label_codec.decode_volume(load_blob(sha256), shape)


def take_labels(sha256: str, shape: tuple[int, int, int]) -> np.ndarray:
    """Like load_labels, but may hand over the warm array itself (for the next revision)."""
    warm = _warm.take(sha256)
    if warm is not None and warm.shape == tuple(shape):
        return warm
    return label_codec.decode_volume(load_blob(sha256), shape)


def labels_warm(sha256: str, shape: tuple[int, int, int]) -> None:
    """Decode a stored volume into the warm cache ahead of the save that will edit it."""
    if not _warm.has(sha256):
        _warm.put(sha256, label_codec.decode_volume(load_blob(sha256), shape))


def raw_sha256(vol: np.ndarray) -> str:
    """Hash of the raw volume (independent of compression), for manifests."""
    return label_codec.volume_sha256(vol)

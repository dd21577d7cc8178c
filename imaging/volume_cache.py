"""In-process LRU cache of decoded CT volumes, bounded in bytes.

The region-growing brush reads the whole scan on every click; loading a 150 MB `volume.npy`
from disk each time would cost more than the grow itself. Each web process keeps the most
recently used volumes in memory, up to `settings.VOLUME_CACHE_BYTES` (default 1 GiB).

Arrays are shared between threads (gunicorn runs threads), so they are handed out read-only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CACHE_BYTES = 1024**3

# Key: (resolved path, mtime in ns, size). A re-ingested scan has a new mtime, so a stale
# array is never served; its old entry is dropped when the new one is stored.
_Key = tuple[str, int, int]

_lock = threading.Lock()
_entries: OrderedDict[_Key, np.ndarray] = OrderedDict()
_loading: dict[_Key, threading.Lock] = {}
_stats = {"bytes": 0, "hits": 0, "misses": 0}


def max_bytes() -> int:
    """The cap, read on every store so that override_settings and env changes apply."""
    from django.conf import settings

    if not settings.configured:
        return DEFAULT_CACHE_BYTES
    return int(getattr(settings, "VOLUME_CACHE_BYTES", DEFAULT_CACHE_BYTES))


def load_volume(path: Path) -> np.ndarray:
    """The int16 (z, y, x) HU array of a `volume.npy`, fully in memory and read-only."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key: _Key = (str(resolved), stat.st_mtime_ns, stat.st_size)
    cached = _lookup(key)
    if cached is not None:
        return cached
    with _key_lock(key):
        # Another thread may have loaded it while this one waited for the key lock.
        cached = _lookup(key, count=False)
        if cached is not None:
            return cached
        try:
            volume = _read(resolved)
            _store(key, volume)
        finally:
            with _lock:
                _loading.pop(key, None)
    return volume


def _lookup(key: _Key, *, count: bool = True) -> np.ndarray | None:
    """The cached array or None; each load_volume() call counts one hit or one miss."""
    with _lock:
        volume = _entries.get(key)
        if volume is not None:
            _entries.move_to_end(key)
        if count:
            _stats["hits" if volume is not None else "misses"] += 1
        return volume


def _key_lock(key: _Key) -> threading.Lock:
    # One loader per file: ten threads clicking in the same new scan read it once.
    with _lock:
        return _loading.setdefault(key, threading.Lock())


def _read(path: Path) -> np.ndarray:
    # np.load, not mmap: every voxel is in RAM, so a click never waits on the disk.
    volume = np.load(path, allow_pickle=False)
    if volume.dtype != np.int16 or volume.ndim != 3:
        raise ValueError(
            f"{path} holds a {volume.dtype} array of shape {volume.shape}; expected int16 (z, y, x)"
        )
    volume.flags.writeable = False
    return volume


def _store(key: _Key, volume: np.ndarray) -> None:
    cap = max_bytes()
    with _lock:
        for old in [k for k in _entries if k[0] == key[0]]:
            _stats["bytes"] -= _entries.pop(old).nbytes
        if volume.nbytes > cap:
            return  # returned to the caller, never cached: it would evict everything
        _entries[key] = volume
        _stats["bytes"] += volume.nbytes
        while _stats["bytes"] > cap:
            _, evicted = _entries.popitem(last=False)
            _stats["bytes"] -= evicted.nbytes


def cache_clear() -> None:
    with _lock:
        _entries.clear()
        _stats.update(bytes=0, hits=0, misses=0)


def cache_info() -> dict[str, Any]:
    cap = max_bytes()
    with _lock:
        return {**_stats, "entries": len(_entries), "max_bytes": cap}

"""Content-addressed label storage: one compressed file per distinct label volume.

A file is named by the sha256 of the raw volume, written under a temporary name and renamed
into place, and never rewritten: two revisions with the same labels share one file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from django.conf import settings

from annotation import label_codec


def _path(sha256: str) -> Path:
    return Path(settings.MEDIA_ROOT) / "labels" / sha256[:2] / f"{sha256}.zst"


def store_labels(vol: np.ndarray) -> str:
    sha = label_codec.volume_sha256(vol)
    path = _path(sha)
    if path.exists():
        return sha
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = label_codec.encode_volume(vol)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha


def load_blob(sha256: str) -> bytes:
    return _path(sha256).read_bytes()


def load_labels(sha256: str, shape: tuple[int, int, int]) -> np.ndarray:
    return label_codec.decode_volume(load_blob(sha256), shape)

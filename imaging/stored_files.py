"""The files a stored scan owns, for core.storage_check (listed in settings.CURATECT_STORED_FILES).

A scan folder (MEDIA_ROOT/<storage_dir>/) holds one pseudonymised DICOM file per instance and
the volume cache volume.npy. Scan.volume_sha256 is the sha256 of the volume's int16 voxel bytes
(not of the .npy header), so the volume is checked by hashing what follows its header, after
the header is checked against the scan's shape. Instance.source_sha256 is the hash of the file
as it *arrived* (before pseudonymisation), so a stored DICOM file can only be checked to exist;
its pixels are covered by the volume, which was built from them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from core.models import Instance, Scan
from core.storage_check import StoredFile
from imaging.ingest.store import VOLUME_FILE


def volume_voxel_sha256(shape: tuple[int, int, int]) -> Callable[[Path], str]:
    """The digest of a volume.npy as Scan.volume_sha256 is made: its voxel bytes, once its
    header says int16, C order and the scan's shape (else ValueError says what it holds)."""

    def digest(path: Path) -> str:
        with open(path, "rb") as f:
            try:
                version = np.lib.format.read_magic(f)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                header = read(f)
            except ValueError as exc:
                raise ValueError(f"not a readable .npy volume ({exc})") from exc
            got_shape, fortran, dtype = header
            if tuple(got_shape) != tuple(shape) or fortran or dtype != np.dtype(np.int16):
                raise ValueError(
                    f"the volume holds {dtype} {list(got_shape)}{' (Fortran order)' if fortran else ''}, "
                    f"the scan says int16 {list(shape)}"
                )
            h = hashlib.sha256()
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()

    return digest


def stored_files() -> Iterator[StoredFile]:
    for scan in Scan.objects.only(
        "pk", "storage_dir", "volume_sha256", "slices", "rows", "columns"
    ).iterator():
        yield StoredFile(
            f"{scan.storage_dir}/{VOLUME_FILE}",
            f"scan {scan.pk}",
            scan.volume_sha256,
            volume_voxel_sha256(scan.shape),
        )
    rows = Instance.objects.values_list("scan_id", "scan__storage_dir", "file_name", "index").order_by(
        "scan_id", "index"
    )
    for scan_id, storage_dir, file_name, index in rows.iterator():
        yield StoredFile(f"{storage_dir}/{file_name}", f"scan {scan_id} instance {index}")

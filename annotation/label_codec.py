"""Label volumes as bytes: storage, the wire format of saves, boxes, and class checks.

A label volume is a C-order uint8 array of shape (z, y, x): one class per voxel, 0 is
background. Everything here is pure numpy so services, APIs and tasks can share it.

Measured on 300×512×512 with ~2 % lesion voxels (2 CPU cores): encode ≈ 20 ms,
decode ≈ 20 ms, blob ≈ 0.4 MB, sha256 ≈ 45 ms, check_classes ≈ 3 ms, voxel_counts ≈ 30 ms.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import operator
import zlib
from collections.abc import Sequence

import numpy as np
import zstandard

# Level 1 compresses label volumes as well as level 3 (blobs differ by ~5 %) and is a bit
# faster. Multithreading (threads>0) was slower on a 78 MB volume here, so it stays off.
ZSTD_LEVEL = 1

AXES = (("z", "slices"), ("y", "rows"), ("x", "columns"))


class LabelPayloadError(ValueError):
    """A label payload or box that cannot be applied; the message says why, for a person."""


# --- storage -------------------------------------------------------------------------


def _as_label_volume(vol: np.ndarray) -> np.ndarray:
    if vol.dtype != np.uint8:
        raise ValueError(f"label volumes are uint8, not {vol.dtype}")
    # A no-op for the usual C-order volume; a copy only for views and F-order arrays.
    return np.ascontiguousarray(vol)


def encode_volume(vol: np.ndarray) -> bytes:
    """A zstd frame of the raw C-order uint8 bytes (the frame records its content size)."""
    raw = memoryview(_as_label_volume(vol)).cast("B")  # no tobytes() copy (~45 ms saved)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw)


def decode_volume(blob: bytes, shape: Sequence[int]) -> np.ndarray:
    """Decode a stored blob into a fresh, writable uint8 array of `shape`."""
    shape = tuple(int(n) for n in shape)
    out = np.empty(shape, dtype=np.uint8)
    size = out.size
    declared = _zstd_content_size(blob)
    if declared not in (-1, size):
        raise ValueError(f"stored label blob holds {declared:,} bytes, shape {shape} needs {size:,}")
    view = memoryview(out).cast("B")
    filled = 0
    # readinto straight into the array: half the time of decompress() + a writable copy.
    try:
        with zstandard.ZstdDecompressor().stream_reader(blob) as reader:
            while filled < size:
                got = reader.readinto(view[filled:])
                if got == 0:
                    break
                filled += got
            extra = reader.read(1)
    except zstandard.ZstdError as exc:
        raise ValueError(f"stored label blob is corrupt ({exc})") from exc
    if filled != size or extra:
        raise ValueError(f"stored label blob does not hold exactly {size:,} bytes for shape {shape}")
    return out


def volume_sha256(vol: np.ndarray) -> str:
    """Content address of a label volume: sha256 of its raw C-order bytes."""
    return hashlib.sha256(memoryview(_as_label_volume(vol)).cast("B")).hexdigest()


def _zstd_content_size(blob: bytes) -> int:
    try:
        return zstandard.frame_content_size(blob)
    except zstandard.ZstdError as exc:
        raise ValueError(f"not a zstd frame ({exc})") from exc


# --- wire ----------------------------------------------------------------------------


def encode_payload(raw: bytes) -> str:
    """base64 text of a zstd frame of `raw` (any bytes-like object, e.g. a C-order array)."""
    data = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw)
    return base64.b64encode(data).decode("ascii")


def decode_payload(encoding: str, data_b64: str, expected_size: int) -> bytes:
    """Decode base64 + zstd/gzip into exactly `expected_size` raw bytes.

    Never inflates more than expected_size + 1 bytes, so a small payload that would
    decompress to gigabytes (a decompression bomb) is refused after a bounded amount of work.
    """
    if expected_size < 1:
        raise LabelPayloadError(f"expected size must be positive, not {expected_size}")
    try:
        data = base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise LabelPayloadError(f"the data is not valid base64 ({exc})") from exc
    if encoding == "zstd":
        raw = _inflate_zstd(data, expected_size)
    elif encoding == "gzip":
        raw = _inflate_gzip(data, expected_size)
    else:
        raise LabelPayloadError(f'unknown encoding {encoding!r}; use "zstd" or "gzip"')
    if len(raw) > expected_size:
        raise LabelPayloadError(
            f"the {encoding} data decompresses to more than {expected_size:,} bytes;"
            f" one byte per voxel needs exactly {expected_size:,}"
        )
    if len(raw) < expected_size:
        raise LabelPayloadError(
            f"the {encoding} data decompresses to {len(raw):,} bytes;"
            f" one byte per voxel needs exactly {expected_size:,}"
        )
    return raw


def _inflate_zstd(data: bytes, expected_size: int) -> bytes:
    limit = expected_size + 1
    try:
        declared = zstandard.frame_content_size(data)
        # Refuse early when the header already says the size is wrong.
        if declared != -1 and declared != expected_size:
            raise LabelPayloadError(
                f"the zstd frame holds {declared:,} bytes; one byte per voxel needs exactly {expected_size:,}"
            )
        chunks: list[bytes] = []
        total = 0
        with zstandard.ZstdDecompressor().stream_reader(data) as reader:
            while total < limit:
                chunk = reader.read(limit - total)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
    except zstandard.ZstdError as exc:
        raise LabelPayloadError(f"the zstd data is corrupt or truncated ({exc})") from exc
    return b"".join(chunks)  # one chunk: returned as is, no copy


def _inflate_gzip(data: bytes, expected_size: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip, as CompressionStream writes
    try:
        raw = inflater.decompress(data, expected_size + 1)
    except zlib.error as exc:
        raise LabelPayloadError(f"the gzip data is corrupt ({exc})") from exc
    if len(raw) <= expected_size and not inflater.eof:
        raise LabelPayloadError("the gzip data is truncated (the stream ends before its end marker)")
    if inflater.unused_data:
        raise LabelPayloadError("the gzip data has trailing bytes after the end of the stream")
    return raw


# --- boxes ---------------------------------------------------------------------------


def _three_ints(values: Sequence[int], what: str) -> tuple[int, int, int]:
    try:
        items = tuple(operator.index(v) for v in values)
    except TypeError:
        items = ()
    if len(items) != 3 or any(isinstance(v, bool) for v in values):
        raise LabelPayloadError(f"box {what} must be three integers [z, y, x], not {values!r}")
    return items  # type: ignore[return-value]


def validate_box(
    shape: Sequence[int], offset: Sequence[int], box_shape: Sequence[int]
) -> tuple[slice, slice, slice]:
    """Check a box lies inside a volume of `shape`; return its slices."""
    start = _three_ints(offset, "offset")
    size = _three_ints(box_shape, "shape")
    slices = []
    for (axis, unit), n, begin, length in zip(AXES, shape, start, size, strict=True):
        end = begin + length
        if length < 1:
            raise LabelPayloadError(f"box is empty: its size along {axis} is {length}")
        if begin < 0:
            raise LabelPayloadError(f"box at {axis} {begin}..{end} starts before the scan (negative offset)")
        if end > n:
            raise LabelPayloadError(f"box at {axis} {begin}..{end} exceeds the scan's {n} {unit}")
        slices.append(slice(begin, end))
    return tuple(slices)  # type: ignore[return-value]


def apply_box(vol: np.ndarray, offset: Sequence[int], box: np.ndarray) -> None:
    """Write `box` into `vol` at `offset` (z, y, x), in place."""
    if box.ndim != 3:
        raise LabelPayloadError(f"a box has three dimensions, not {box.ndim}")
    vol[validate_box(vol.shape, offset, box.shape)] = box


def changed_bbox(a: np.ndarray, b: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """(offset, shape) of the smallest box holding every voxel where a and b differ."""
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"cannot compare volumes of shapes {a.shape} and {b.shape}")
    zs = np.flatnonzero(_slices_differ(a, b))
    if zs.size == 0:
        return None
    z0, z1 = int(zs[0]), int(zs[-1]) + 1
    # Only the slices that changed are compared voxel by voxel.
    plane = (a[z0:z1] != b[z0:z1]).any(axis=0)
    ys = np.flatnonzero(plane.any(axis=1))
    xs = np.flatnonzero(plane.any(axis=0))
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    return (z0, y0, x0), (z1 - z0, y1 - y0, x1 - x0)


def _slices_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One bool per z slice; compares 8 voxels per step where the layout allows."""
    plane = a.shape[1] * a.shape[2]
    wide = a.itemsize == 1 and plane % 8 == 0
    if wide and a.flags.c_contiguous and b.flags.c_contiguous and b.dtype == a.dtype:
        a8 = a.reshape(a.shape[0], plane).view(np.uint64)
        b8 = b.reshape(b.shape[0], plane).view(np.uint64)
        return (a8 != b8).any(axis=1)
    return (a != b).any(axis=(1, 2))


# --- classes -------------------------------------------------------------------------


def _histogram(vol: np.ndarray) -> np.ndarray:
    """Counts of the 256 values; index 0 is left at 0 (background is not counted)."""
    flat = _as_label_volume(vol).reshape(-1)
    # bincount widens its input to int64: on the few non-zero voxels that is cheap
    # (~30 ms on 78 M voxels at 2 % lesion vs ~150 ms for the whole volume).
    counts = np.bincount(flat[flat != 0], minlength=256)
    counts[0] = 0
    return counts


def check_classes(vol: np.ndarray, allowed: set[int]) -> None:
    """Refuse values other than 0 (background) and the schema's classes."""
    ok = np.zeros(256, dtype=bool)
    ok[0] = True
    ok[[v for v in allowed if 0 <= v <= 255]] = True
    top = int(vol.max()) if vol.size else 0
    if ok[: top + 1].all():  # the usual case, decided by one fast max()
        return
    unknown = [int(v) for v in np.flatnonzero((_histogram(vol) > 0) & ~ok)]
    if unknown:
        listed = ", ".join(str(v) for v in unknown)
        classes = ", ".join(str(v) for v in sorted(allowed)) or "none"
        raise LabelPayloadError(
            f"unknown label values {listed}; this schema's classes are {classes} (0 is background)"
        )


def voxel_counts(vol: np.ndarray) -> dict[int, int]:
    """Voxels per non-zero class present."""
    counts = _histogram(vol)
    return {int(v): int(counts[v]) for v in np.flatnonzero(counts)}

from __future__ import annotations

import base64
import gzip
import hashlib
import tracemalloc
import zlib

import numpy as np
import pytest
import zstandard

from annotation.label_codec import (
    LabelPayloadError,
    apply_box,
    changed_bbox,
    check_classes,
    decode_payload,
    decode_volume,
    encode_payload,
    encode_volume,
    validate_box,
    volume_sha256,
    voxel_counts,
)


def label_volume(shape: tuple[int, int, int] = (20, 48, 64), seed: int = 0) -> np.ndarray:
    """A few balls of classes 1-3 in a background of 0."""
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape, dtype=np.uint8)
    z, y, x = np.indices(shape)
    for value in (1, 2, 3):
        c = rng.integers(4, np.array(shape) - 4)
        vol[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < 16] = value
    return vol


def small_raw() -> bytes:
    return np.random.default_rng(1).integers(0, 4, (4, 8, 8), dtype=np.uint8).tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- storage -------------------------------------------------------------------------


def test_volume_round_trips_through_storage() -> None:
    vol = label_volume()

    blob = encode_volume(vol)
    back = decode_volume(blob, vol.shape)

    assert back.dtype == np.uint8 and back.shape == vol.shape
    assert np.array_equal(back, vol)
    assert back.flags.writeable and back.flags.c_contiguous
    assert len(blob) < vol.nbytes / 10


def test_storage_refuses_a_blob_of_another_shape() -> None:
    blob = encode_volume(label_volume())

    with pytest.raises(ValueError, match="needs"):
        decode_volume(blob, (20, 48, 63))


def test_storage_refuses_a_corrupt_blob() -> None:
    blob = bytearray(encode_volume(label_volume()))
    blob[len(blob) // 2 :] = bytes(len(blob) - len(blob) // 2)

    with pytest.raises(ValueError, match="label blob"):
        decode_volume(bytes(blob), (20, 48, 64))


def test_sha256_is_the_hash_of_the_raw_c_order_bytes() -> None:
    vol = label_volume()

    assert volume_sha256(vol) == hashlib.sha256(vol.tobytes()).hexdigest()
    assert volume_sha256(np.asfortranarray(vol)) == volume_sha256(vol)
    assert volume_sha256(decode_volume(encode_volume(vol), vol.shape)) == volume_sha256(vol)


def test_sha256_changes_with_one_voxel() -> None:
    vol = label_volume()
    other = vol.copy()
    other[3, 4, 5] ^= 1

    assert volume_sha256(other) != volume_sha256(vol)


# --- wire ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("zstd", zstandard.ZstdCompressor().compress), ("gzip", gzip.compress)],
)
def test_payload_decodes_zstd_and_gzip(encoding: str, compress) -> None:
    raw = small_raw()

    assert decode_payload(encoding, b64(compress(raw)), len(raw)) == raw


def test_payload_decodes_zstd_without_a_content_size() -> None:
    raw = small_raw()
    data = zstandard.ZstdCompressor(write_content_size=False).compress(raw)

    assert decode_payload("zstd", b64(data), len(raw)) == raw


def test_encode_payload_round_trips() -> None:
    raw = small_raw()

    assert decode_payload("zstd", encode_payload(raw), len(raw)) == raw


def test_payload_refuses_bad_base64() -> None:
    with pytest.raises(LabelPayloadError, match="not valid base64"):
        decode_payload("zstd", "not base64!", 10)


@pytest.mark.parametrize("encoding", ["zstd", "gzip"])
def test_payload_refuses_corrupt_data(encoding: str) -> None:
    with pytest.raises(LabelPayloadError, match=f"the {encoding} data is corrupt"):
        decode_payload(encoding, b64(b"this is not compressed at all"), 10)


def test_payload_refuses_truncated_gzip() -> None:
    data = gzip.compress(bytes(1000))

    with pytest.raises(LabelPayloadError, match="truncated"):
        decode_payload("gzip", b64(data[:-12]), 1000)


def test_payload_refuses_an_unknown_encoding() -> None:
    with pytest.raises(LabelPayloadError, match='use "zstd" or "gzip"'):
        decode_payload("brotli", b64(b"x"), 1)


@pytest.mark.parametrize("size", [999, 1001])
@pytest.mark.parametrize(
    "compress",
    [
        zstandard.ZstdCompressor().compress,
        zstandard.ZstdCompressor(write_content_size=False).compress,
        gzip.compress,
    ],
)
def test_payload_refuses_a_wrong_size(compress, size: int) -> None:
    data = b64(compress(bytes(size)))

    with pytest.raises(LabelPayloadError, match="exactly 1,000"):
        decode_payload("zstd" if compress is not gzip.compress else "gzip", data, 1000)


def zstd_bomb(size: int) -> bytes:
    # Streamed and without a content size in the header, as an attacker would send it.
    compressor = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    chunk = bytes(1 << 20)
    return b"".join([compressor.compress(chunk) for _ in range(size >> 20)] + [compressor.flush()])


def gzip_bomb(size: int) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    return b"".join([compressor.compress(chunk) for _ in range(size >> 20)] + [compressor.flush()])


@pytest.mark.parametrize(("encoding", "make"), [("zstd", zstd_bomb), ("gzip", gzip_bomb)])
def test_payload_refuses_a_decompression_bomb_without_inflating_it(encoding: str, make) -> None:
    bomb = b64(make(64 << 20))  # 64 MB of zeros in well under 1 MB
    tracemalloc.start()
    try:
        with pytest.raises(LabelPayloadError, match="more than 4,096 bytes"):
            decode_payload(encoding, bomb, 4096)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 8 << 20  # the base64 text decoded, plus at most 4,097 inflated bytes


# --- boxes ---------------------------------------------------------------------------


def test_box_is_applied_in_place() -> None:
    vol = np.zeros((10, 12, 14), dtype=np.uint8)
    box = np.full((2, 3, 4), 7, dtype=np.uint8)

    apply_box(vol, (8, 9, 10), box)

    assert np.count_nonzero(vol) == box.size
    assert (vol[8:10, 9:12, 10:14] == 7).all()


@pytest.mark.parametrize(
    ("offset", "box_shape", "message"),
    [
        ((290, 0, 0), (20, 4, 4), "box at z 290..310 exceeds the scan's 300 slices"),
        ((0, 500, 0), (4, 20, 4), "box at y 500..520 exceeds the scan's 512 rows"),
        ((0, 0, 510), (4, 4, 3), "box at x 510..513 exceeds the scan's 512 columns"),
        ((0, -1, 0), (4, 4, 4), "box at y -1..3 starts before the scan"),
        ((0, 0, 0), (4, 0, 4), "box is empty: its size along y is 0"),
        ((0, 0), (4, 4, 4), "box offset must be three integers"),
        ((0, 0, 0), (4, 4.5, 4), "box shape must be three integers"),
    ],
)
def test_bad_boxes_are_refused_with_a_reason(offset, box_shape, message: str) -> None:
    with pytest.raises(LabelPayloadError) as excinfo:
        validate_box((300, 512, 512), offset, box_shape)

    assert message in str(excinfo.value)


def test_apply_box_refuses_a_box_outside_the_volume() -> None:
    vol = np.zeros((10, 12, 14), dtype=np.uint8)

    with pytest.raises(LabelPayloadError, match="exceeds the scan's 10 slices"):
        apply_box(vol, (9, 0, 0), np.ones((2, 2, 2), dtype=np.uint8))
    assert not vol.any()


@pytest.mark.parametrize("shape", [(12, 16, 16), (12, 15, 17)])  # fast and plain comparison
def test_changed_bbox_is_the_box_of_the_differences(shape) -> None:
    a = np.zeros(shape, dtype=np.uint8)
    b = a.copy()
    b[3, 4, 5] = 1
    b[7, 2, 9] = 2

    assert changed_bbox(a, a.copy()) is None
    assert changed_bbox(a, b) == ((3, 2, 5), (5, 3, 5))


# --- classes -------------------------------------------------------------------------


def test_known_classes_pass() -> None:
    check_classes(label_volume(), {1, 2, 3})
    check_classes(np.zeros((2, 2, 2), dtype=np.uint8), set())


def test_unknown_classes_are_listed() -> None:
    vol = label_volume()
    vol[0, 0, 0] = 7
    vol[0, 0, 1] = 200

    with pytest.raises(LabelPayloadError) as excinfo:
        check_classes(vol, {1, 2, 3})

    assert "unknown label values 7, 200" in str(excinfo.value)
    assert "classes are 1, 2, 3" in str(excinfo.value)


def test_a_value_in_a_gap_of_the_schema_is_refused() -> None:
    vol = label_volume()  # holds 1, 2 and 3

    with pytest.raises(LabelPayloadError, match="unknown label values 2;"):
        check_classes(vol, {1, 3})


def test_voxel_counts_count_each_non_zero_class() -> None:
    vol = np.zeros((4, 5, 6), dtype=np.uint8)
    vol[0, :2, :3] = 1
    vol[3, 4, 5] = 3

    assert voxel_counts(vol) == {1: 6, 3: 1}
    assert voxel_counts(np.zeros((2, 2, 2), dtype=np.uint8)) == {}

"""DICOMweb WADO-RS for the viewer: series metadata, frames, instances, and series pixel data.

Same permissions as the API, through the one DICOMweb authentication (auth.dicomweb_user:
session, Token, Bearer or Basic), and a scan the user may not see answers
404 as if it did not exist. What is served is the stored, pseudonymised instance; frames are
its raw stored pixel values (before RescaleSlope/Intercept), as WADO-RS defines them.

Speed: the viewer of a 300-slice 512² scan needs ~157 MB of frames. One request per frame
costs a Django round trip each (auth, scope query, file open), so besides the standard
per-frame resource the viewer fetches the series in a few large `pixeldata` requests (one
multipart part per instance, in volume order, each with its Content-Location).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pydicom
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from pydicom.encaps import generate_frames
from pydicom.tag import Tag

from core.models import Instance, Scan, User
from core.selectors import scans_visible_to
from imaging.dicomweb.auth import dicomweb_endpoint, error

logger = logging.getLogger(__name__)

PIXEL_DATA = Tag(0x7FE0, 0x0010)
AVAILABLE_TRANSFER_SYNTAX = "00083002"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
BOUNDARY = "curatect-dicomweb-boundary"
# The most instances one pixeldata request may ask for (~20 MB of 512² int16 slices at 40).
PIXELDATA_MAX_COUNT = 128
# Stored instances never change (content-addressed at ingest), but they are patient data: a
# ward workstation's browser cache outlives the session, so nothing is stored (the viewer keeps
# what it loaded in memory). platform_core.security.NoStoreApiMiddleware says the same for all.
CACHE_CONTROL = "no-store"


class NotFound(Exception):
    pass


def _scan(user: User, study: str, series: str) -> Scan:
    scan = scans_visible_to(user).filter(series_uid=series, study__study_uid=study).first()
    if scan is None:
        raise NotFound
    return scan


def _instance(scan: Scan, sop: str) -> Instance:
    instance = Instance.objects.filter(scan=scan, sop_uid=sop).first()
    if instance is None:
        raise NotFound
    return instance


def _path(scan: Scan, file_name: str) -> Path:
    return Path(settings.MEDIA_ROOT) / scan.storage_dir / file_name


def dicomweb_view(view):
    """Authenticate like every DICOMweb route (auth.dicomweb_endpoint: GET/HEAD only), and turn
    NotFound into the API's 404."""

    @dicomweb_endpoint(("GET",))
    @functools.wraps(view)
    def wrapper(request: HttpRequest, user: User, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, user, *args, **kwargs)
        except NotFound:
            return error(404, "No such study, series, instance or frame.", "not_found")

    return wrapper


# --- Pixel data of stored files -------------------------------------------------------------


@dataclass(frozen=True)
class PixelLocation:
    transfer_syntax: str
    offset: int  # of the Pixel Data value in the file; -1 when encapsulated
    length: int


@functools.lru_cache(maxsize=8192)
def _pixel_location(path: str, mtime_ns: int) -> PixelLocation:
    """Where the pixel data of a stored file lies, read once from the header."""
    # defer_size: the large Pixel Data value is not read, but its file offset is recorded.
    ds = pydicom.dcmread(path, defer_size=1024)
    transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
    raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
    if raw is None:
        raise NotFound
    if ds.file_meta.TransferSyntaxUID.is_compressed or raw.length == 0xFFFFFFFF:
        return PixelLocation(transfer_syntax, -1, 0)
    return PixelLocation(transfer_syntax, raw.value_tell, raw.length)


IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"


def _trailing_pixel_data(path: Path, length: int) -> tuple[bytes, str] | None:
    """Fast path: uncompressed Pixel Data of `length` bytes as the file's last element.

    That is how the stored instances are written, so the frame is the file's tail, and the
    element header just before it proves it (tag, VR and length; explicit or implicit VR
    little endian). No header parse: 300 frames cost ~0.1 s instead of ~1.4 s. Anything else
    (compressed, trailing padding, another size) returns None and takes the general path.
    """
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() < length + 12 + 132:
            return None
        handle.seek(-(length + 12), os.SEEK_END)
        data = handle.read(length + 12)
    size = length.to_bytes(4, "little")
    head = data[:12]
    if (
        head[:4] == _PIXEL_TAG_LE
        and head[4:6] in (b"OW", b"OB")
        and head[6:8] == b"\0\0"
        and head[8:] == size
    ):
        return data[12:], EXPLICIT_VR_LITTLE_ENDIAN
    if head[4:8] == _PIXEL_TAG_LE and head[8:] == size:
        return data[12:], IMPLICIT_VR_LITTLE_ENDIAN
    return None


def frame_bytes(path: Path, expected_length: int | None = None) -> tuple[bytes, str]:
    """(the first frame's stored bytes, its transfer syntax UID).

    `expected_length`: the frame size if uncompressed (rows × columns × 2 for CT), which
    enables the fast path.
    """
    if expected_length:
        found = _trailing_pixel_data(path, expected_length)
        if found is not None:
            return found
    location = _pixel_location(str(path), os.stat(path).st_mtime_ns)
    if location.offset >= 0:
        with open(path, "rb") as handle:
            handle.seek(location.offset)
            return handle.read(location.length), location.transfer_syntax
    ds = pydicom.dcmread(path)
    frames = generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1) or 1))
    return next(frames), location.transfer_syntax


def _frame_size(scan: Scan) -> int:
    # CT stores 16 bits per pixel (BitsAllocated 16); _trailing_pixel_data checks it per file.
    return scan.rows * scan.columns * 2


def _part(data: bytes, content_type: str, location: str | None = None) -> bytes:
    # Content-Length per part lets a client split the body without scanning it for boundaries.
    head = f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
    if location:
        head += f"Content-Location: {location}\r\n"
    return head.encode() + b"\r\n" + data + b"\r\n"


def _multipart(parts: list[bytes], part_type: str) -> HttpResponse:
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    response = HttpResponse(body, content_type=f'multipart/related; type="{part_type}"; boundary={BOUNDARY}')
    response["Cache-Control"] = CACHE_CONTROL
    return response


def _frame_part_type(transfer_syntax: str) -> str:
    return f"application/octet-stream; transfer-syntax={transfer_syntax}"


# --- Series metadata ------------------------------------------------------------------------


class _MetadataCache:
    """DICOM JSON of whole series, per process: parsing 300 headers takes about a second."""

    def __init__(self, max_series: int = 16) -> None:
        self._items: OrderedDict[tuple[int, str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_series

    def get(self, key: tuple[int, str, str]) -> bytes | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: tuple[int, str, str], value: bytes) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._max:
                self._items.popitem(last=False)


_metadata_cache = _MetadataCache()


def instance_json(path: Path) -> dict:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    data = ds.to_json_dict()
    data.pop("7FE00010", None)
    # Where the viewer reads the transfer syntax from (file meta is not part of DICOM JSON).
    data[AVAILABLE_TRANSFER_SYNTAX] = {"vr": "UI", "Value": [str(ds.file_meta.TransferSyntaxUID)]}
    return data


def _metadata_key(scan: Scan) -> tuple[int, str, str]:
    # The voxels alone do not name a series: the same pixels imported twice (a phantom's seed,
    # a re-import into another institution) get other UIDs, and SQLite hands a rolled-back id
    # to the next row. The series UID is in the answer, so it is in the key.
    return (scan.pk, scan.series_uid, scan.volume_sha256)


def _metadata_cache_file(scan: Scan) -> Path:
    # Keyed like the memory cache (the UID hashed: it is long and may hold any digit string).
    uid = hashlib.sha256(scan.series_uid.encode()).hexdigest()[:16]
    name = f"scan-{scan.pk}-{uid}-{scan.volume_sha256[:16]}.json"
    return Path(settings.DATA_DIR) / "cache" / "dicomweb" / name


def series_metadata_bytes(scan: Scan) -> bytes:
    """DICOM JSON of the series: from memory, else the disk cache, else the stored files.

    Parsing 300 headers costs 1–3 s (pydicom), too slow for opening a scan, so the result is
    kept per process and on disk (DATA_DIR/cache/dicomweb/, safe to delete at any time).
    """
    key = _metadata_key(scan)
    cached = _metadata_cache.get(key)
    if cached is not None:
        return cached
    cache_file = _metadata_cache_file(scan)
    try:
        cached = cache_file.read_bytes()
    except OSError:
        instances = scan.instances.order_by("index").values_list("file_name", flat=True)
        cached = json.dumps([instance_json(_path(scan, name)) for name in instances]).encode()
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(cached)
            tmp.replace(cache_file)  # atomic: a concurrent reader sees all or nothing
        except OSError:
            logger.warning("could not write the DICOM JSON cache %s", cache_file, exc_info=True)
    _metadata_cache.put(key, cached)
    return cached


# --- Views ----------------------------------------------------------------------------------


@dicomweb_view
def series_metadata(request: HttpRequest, user: User, study: str, series: str) -> HttpResponse:
    scan = _scan(user, study, series)
    response = HttpResponse(series_metadata_bytes(scan), content_type="application/dicom+json")
    response["Cache-Control"] = CACHE_CONTROL
    return response


@dicomweb_view
def instance_frames(
    request: HttpRequest, user: User, study: str, series: str, sop: str, frames: str
) -> HttpResponse:
    # Stored CT instances are single-frame: frame 1 is the only one.
    if frames.strip() != "1":
        raise NotFound
    scan = _scan(user, study, series)
    instance = _instance(scan, sop)
    data, transfer_syntax = frame_bytes(_path(scan, instance.file_name), _frame_size(scan))
    return _multipart([_part(data, _frame_part_type(transfer_syntax))], "application/octet-stream")


@dicomweb_view
def instance_retrieve(request: HttpRequest, user: User, study: str, series: str, sop: str) -> HttpResponse:
    scan = _scan(user, study, series)
    instance = _instance(scan, sop)
    data = _path(scan, instance.file_name).read_bytes()
    return _multipart([_part(data, "application/dicom")], "application/dicom")


@dicomweb_view
def series_pixeldata(request: HttpRequest, user: User, study: str, series: str) -> HttpResponse:
    """Frames of many instances in one response: `?offset=<first index>&count=<n>`, volume order.

    Each part carries `Content-Location: …/instances/{sop}/frames/1`, so a client can file it
    under the same image id as the per-frame resource.
    """
    try:
        offset = max(0, int(request.GET.get("offset", 0)))
        count = min(PIXELDATA_MAX_COUNT, max(1, int(request.GET.get("count", PIXELDATA_MAX_COUNT))))
    except ValueError:
        return error(400, "offset and count must be integers", "invalid")
    scan = _scan(user, study, series)
    instances = scan.instances.filter(index__gte=offset, index__lt=offset + count).order_by("index")
    base = request.build_absolute_uri(f"/dicomweb/studies/{study}/series/{series}/instances/")
    parts = []
    for sop, file_name in instances.values_list("sop_uid", "file_name"):
        data, transfer_syntax = frame_bytes(_path(scan, file_name), _frame_size(scan))
        parts.append(_part(data, _frame_part_type(transfer_syntax), f"{base}{sop}/frames/1"))
    if not parts:
        raise NotFound
    return _multipart(parts, "application/octet-stream")

"""WADO-RS resources that standard clients use besides the viewer's (imaging/dicomweb/wado.py):
retrieve a whole study or series as `multipart/related; type="application/dicom"`, study
metadata, and one instance's metadata. Same permissions: what the caller may not see is 404.

Bodies are streamed part by part (a 300-slice 512² series is ~160 MB). Instances are served as
stored; when the client names a transfer syntax (`transfer-syntax=1.2.840.10008.1.2.1`) and a
stored instance is compressed, it is decompressed on the way; another explicit syntax that
differs from the stored one answers 406.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pydicom
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ExplicitVRLittleEndian

from core.models import Scan, User
from imaging.dicomweb.auth import dicomweb_endpoint, error
from imaging.dicomweb.qido import visible_scans
from imaging.dicomweb.wado import BOUNDARY, CACHE_CONTROL, _path, instance_json, series_metadata_bytes


class NotAcceptable(Exception):
    pass


def wanted_syntax(request: HttpRequest) -> str:
    """The transfer syntax asked for in Accept, or "*" for "as stored"."""
    accept = request.META.get("HTTP_ACCEPT", "")
    match = re.search(r'transfer-syntax\s*=\s*"?([0-9.*]+)"?', accept)
    return match.group(1) if match else "*"


def encoded(scan: Scan, file_name: str, syntax: str) -> bytes:
    path = _path(scan, file_name)
    data = path.read_bytes()
    if syntax == "*":
        return data
    ds = pydicom.dcmread(DicomBytesIO(data))
    stored = str(ds.file_meta.TransferSyntaxUID)
    if stored == syntax:
        return data
    if syntax != ExplicitVRLittleEndian:
        raise NotAcceptable(f"instances are available as stored ({stored}) or as {ExplicitVRLittleEndian}")
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _part(data: bytes, location: str) -> bytes:
    head = (
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\nContent-Length: {len(data)}\r\n"
        f"Content-Location: {location}\r\n\r\n"
    )
    return head.encode() + data + b"\r\n"


def _stream(request: HttpRequest, scans: list[Scan], syntax: str) -> Iterator[bytes]:
    for scan in scans:
        base = request.build_absolute_uri(
            f"/dicomweb/studies/{scan.study.study_uid}/series/{scan.series_uid}/instances/"
        )
        for sop, file_name in scan.instances.order_by("index").values_list("sop_uid", "file_name"):
            yield _part(encoded(scan, file_name, syntax), base + sop)
    yield f"--{BOUNDARY}--\r\n".encode()


def _multipart_response(request: HttpRequest, scans: list[Scan]) -> HttpResponse:
    if not scans:
        return error(404, "No such study or series.", "not_found")
    syntax = wanted_syntax(request)
    try:
        # Check the first instance now: a 406 must come before the streamed 200.
        first = scans[0].instances.order_by("index").values_list("file_name", flat=True).first()
        if first:
            encoded(scans[0], first, syntax)
    except NotAcceptable as exc:
        return error(406, str(exc), "not_acceptable")
    ts = "*" if syntax == "*" else syntax
    response = StreamingHttpResponse(
        _stream(request, scans, syntax),
        content_type=f'multipart/related; type="application/dicom"; transfer-syntax={ts}; boundary={BOUNDARY}',
    )
    response["Cache-Control"] = CACHE_CONTROL
    return response


def _scans(user: User, study: str, series: str | None = None) -> list[Scan]:
    scans = visible_scans(user).filter(study__study_uid=study).select_related("study")
    if series is not None:
        scans = scans.filter(series_uid=series)
    return list(scans.order_by("pk"))


@dicomweb_endpoint(("GET",))
def retrieve_study(request: HttpRequest, user: User, study: str) -> HttpResponse:
    return _multipart_response(request, _scans(user, study))


@dicomweb_endpoint(("GET",))
def retrieve_series(request: HttpRequest, user: User, study: str, series: str) -> HttpResponse:
    return _multipart_response(request, _scans(user, study, series))


@dicomweb_endpoint(("GET",))
def study_metadata(request: HttpRequest, user: User, study: str) -> HttpResponse:
    scans = _scans(user, study)
    if not scans:
        return error(404, "No such study.", "not_found")
    items = [item for scan in scans for item in json.loads(series_metadata_bytes(scan))]
    response = HttpResponse(json.dumps(items), content_type="application/dicom+json")
    response["Cache-Control"] = CACHE_CONTROL
    return response


@dicomweb_endpoint(("GET",))
def instance_metadata(request: HttpRequest, user: User, study: str, series: str, sop: str) -> HttpResponse:
    scans = _scans(user, study, series)
    instance = scans[0].instances.filter(sop_uid=sop).first() if scans else None
    if instance is None:
        return error(404, "No such instance.", "not_found")
    data = instance_json(_path(scans[0], instance.file_name))
    return HttpResponse(json.dumps([data]), content_type="application/dicom+json")

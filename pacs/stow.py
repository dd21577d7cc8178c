"""STOW-RS (PS3.18 §10.5): `POST /dicomweb/studies[/{study}]`, multipart/related of
application/dicom parts, into the same ingest as uploads. Data managers only.

The body is streamed to a spool folder part by part (never held in memory), then ingested as one
ImportJob (`Content-Location` of the response names it). The response is the standard store
response: ReferencedSOPSequence for the instances now stored — referenced by the UIDs the client
sent, with the RetrieveURL of the stored, pseudonymised instance (UIDs are remapped on arrival,
so every item carries WarningReason B000 "coercion of data elements") — and FailedSOPSequence
with a FailureReason for the rest. 200: all stored; 202: some failed; 409: none stored.

Query parameters: `institution=<slug>` (default: the caller's first managed institution) and
`campaign=<slug>` (stored scans join it).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pydicom
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from core.models import Campaign, Instance, Role, User
from core.selectors import campaigns_visible_to, institutions_of
from imaging import pseudonymise as pseudo
from imaging.dicomweb.auth import dicomweb_endpoint, error
from imaging.ingest.store import uid_keys
from imaging.models import ImportJob
from pacs import intake

logger = logging.getLogger(__name__)

# FailureReason / WarningReason values (PS3.4 Annex GG.4 and PS3.18 Table 10.5.3-2).
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122
NOT_OF_THIS_STUDY = 0xA900  # "Data Set does not match SOP Class"/study in the URL
CANNOT_UNDERSTAND = 0xC000
COERCED = 0xB000
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
CHUNK = 1 << 20


class BadRequest(ValueError):
    def __init__(self, status: int, detail: str, code: str) -> None:
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code


def _boundary(content_type: str) -> bytes:
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() != "multipart/related":
        raise BadRequest(
            415,
            'send multipart/related; type="application/dicom" (one instance per part)',
            "unsupported_media_type",
        )
    type_match = re.search(r'type\s*=\s*"?([^";]+)"?', params, re.IGNORECASE)
    if type_match and type_match.group(1).strip().lower() != "application/dicom":
        raise BadRequest(
            415,
            f"parts of type {type_match.group(1)} are not supported; send application/dicom",
            "unsupported_media_type",
        )
    match = re.search(r'boundary\s*=\s*"?([^";]+)"?', params, re.IGNORECASE)
    if not match:
        raise BadRequest(400, "the multipart Content-Type has no boundary", "invalid")
    return match.group(1).strip().encode()


def _body_stream(request: HttpRequest) -> Iterator[bytes]:
    """The request body in chunks. Chunked transfer encoding (dicomweb-client uses it above 1 MB)
    has no Content-Length, so Django would see an empty body; gunicorn decodes it in wsgi.input."""
    if request.META.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        if not request.META.get("SERVER_SOFTWARE", "").startswith("gunicorn"):
            raise BadRequest(
                411, "chunked uploads need the gunicorn server; send a Content-Length", "length_required"
            )
        stream: BinaryIO = request.environ["wsgi.input"]
        limit = None
    else:
        stream, limit = request, int(request.META.get("CONTENT_LENGTH") or 0)
    total = 0
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return
        total += len(chunk)
        if total > settings.INGEST_MAX_UPLOAD_BYTES:
            raise BadRequest(
                413, "the upload exceeds the size limit; split it into several requests", "too_large"
            )
        yield chunk
        if limit is not None and total >= limit:
            return


def split_parts(chunks: Iterator[bytes], boundary: bytes, folder: Path) -> list[dict]:
    """Write each part's body to folder/NNNNN.dcm while reading; returns [{name, content_type}]."""
    delimiter = b"\r\n--" + boundary
    buffer = bytearray(b"\r\n")  # the first delimiter has no CRLF before it
    parts: list[dict] = []
    state = "preamble"
    out = None
    chunks = iter(chunks)
    exhausted = False
    while True:
        if state == "preamble":
            at = buffer.find(delimiter)
            if at >= 0:
                del buffer[: at + len(delimiter)]
                state = "after-delimiter"
                continue
        elif state == "after-delimiter":
            if len(buffer) >= 2 and buffer[:2] == b"--":
                break  # close delimiter
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(buffer[:end]).decode("latin-1")
                del buffer[: end + 4]
                headers = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (line.partition(":") for line in head.split("\r\n")[1:] if ":" in line)
                )
                name = f"{len(parts) + 1:05d}.dcm"
                parts.append({"name": name, "content_type": headers.get("content-type", "application/dicom")})
                out = open(folder / name, "wb")  # noqa: SIM115 (closed at the part's end)
                state = "body"
                continue
        elif state == "body":
            at = buffer.find(delimiter)
            if at >= 0:
                out.write(buffer[:at])
                out.close()
                del buffer[: at + len(delimiter)]
                state = "after-delimiter"
                continue
            keep = len(delimiter)
            if len(buffer) > keep:
                out.write(buffer[:-keep])
                del buffer[:-keep]
        if exhausted:
            if out is not None and not out.closed:
                out.close()
            if state != "after-delimiter" or parts == []:
                raise BadRequest(400, "the multipart body ends before its closing boundary", "invalid")
            break
        try:
            buffer += next(chunks)
        except StopIteration:
            exhausted = True
    return parts


def _managed_institution(request: HttpRequest, user: User):
    managed = institutions_of(user, Role.DATA_MANAGER)
    slug = request.GET.get("institution")
    institution = managed.filter(slug=slug).first() if slug else managed.order_by("pk").first()
    if institution is None:
        raise BadRequest(403, "only a data manager of the institution can store instances", "forbidden")
    campaign = None
    if request.GET.get("campaign"):
        campaign = campaigns_visible_to(user).filter(slug=request.GET["campaign"]).first()
        if campaign is None:
            raise BadRequest(404, "no such campaign", "not_found")
    return institution, campaign


def _sop_ref(sop_class: str, sop_uid: str, **extra: dict) -> dict:
    item = {"00081150": {"vr": "UI", "Value": [sop_class]}, "00081155": {"vr": "UI", "Value": [sop_uid]}}
    item.update(extra)
    return dict(sorted(item.items()))


def _reason(code: int) -> dict:
    return {"vr": "US", "Value": [code]}


def store(request: HttpRequest, user: User, study: str | None = None) -> HttpResponse:
    try:
        institution, campaign = _managed_institution(request, user)
        boundary = _boundary(request.META.get("CONTENT_TYPE", ""))
        folder = intake.new_spool_folder("stow")
        try:
            parts = split_parts(_body_stream(request), boundary, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    except BadRequest as exc:
        return error(exc.status, exc.detail, exc.code)
    try:
        return _ingest(request, user, institution, campaign, folder, parts, study)
    finally:
        # The parts are the files as sent (identifying): gone however the request ends.
        shutil.rmtree(folder, ignore_errors=True)


def _ingest(
    request, user, institution, campaign: Campaign | None, folder: Path, parts: list[dict], study: str | None
) -> HttpResponse:
    failed: list[dict] = []
    refused: list[dict] = []
    sent: dict[str, tuple[str, str]] = {}  # part name -> (SOP class, SOP instance UID) as sent
    for part in parts:
        path = folder / part["name"]
        if not part["content_type"].lower().startswith("application/dicom"):
            refused.append(
                {"file": part["name"], "reason": f"part of type {part['content_type']} is not supported"}
            )
            failed.append(_sop_ref("", "", **{"00081197": _reason(SOP_CLASS_NOT_SUPPORTED)}))
            path.unlink()
            continue
        try:
            ds = pydicom.dcmread(
                path,
                stop_before_pixels=True,
                specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"],
            )
            sop_class, sop_uid = str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", ""))
        except Exception:
            refused.append({"file": part["name"], "reason": "not readable as DICOM"})
            failed.append(_sop_ref("", "", **{"00081197": _reason(CANNOT_UNDERSTAND)}))
            path.unlink()
            continue
        if study is not None and str(ds.get("StudyInstanceUID", "")) != study:
            refused.append(
                {"file": part["name"], "reason": f"the instance is not of study {study} named in the URL"}
            )
            failed.append(_sop_ref(sop_class, sop_uid, **{"00081197": _reason(NOT_OF_THIS_STUDY)}))
            path.unlink()
            continue
        sent[part["name"]] = (sop_class, sop_uid)
    job = intake.job_create(
        institution=institution,
        source=f"DICOMweb STOW-RS by {user.username}",
        campaign_id=campaign.pk if campaign else None,
        actor=user,
    )
    job = intake.job_run_folder(job, folder, origin_source="stow", extra={"rejected_files": refused})
    reasons = {r["file"]: r["reason"] for r in job.report.get("rejected_files", [])}
    stored, stored_study = _stored(sent, job)
    referenced = []
    for name, (sop_class, sop_uid) in sent.items():
        instance = stored.get(sop_uid)
        if instance is None:
            code = (
                SOP_CLASS_NOT_SUPPORTED
                if sop_class != CT_IMAGE_STORAGE or "not a CT image" in reasons.get(name, "")
                else PROCESSING_FAILURE
            )
            failed.append(_sop_ref(sop_class, sop_uid, **{"00081197": _reason(code)}))
            continue
        url = request.build_absolute_uri(
            f"/dicomweb/studies/{instance.scan.study.study_uid}/series/{instance.scan.series_uid}"
            f"/instances/{instance.sop_uid}"
        )
        referenced.append(
            _sop_ref(
                sop_class, sop_uid, **{"00081190": {"vr": "UR", "Value": [url]}, "00081196": _reason(COERCED)}
            )
        )
    body: dict = {}
    if len(stored_study) == 1:
        (uid,) = stored_study
        body["00081190"] = {
            "vr": "UR",
            "Value": [request.build_absolute_uri(reverse("dicomweb-study", kwargs={"study": uid}))],
        }
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    status = 200 if not failed else 202 if referenced else 409
    response = HttpResponse(json.dumps(body), status=status, content_type="application/dicom+json")
    response["Content-Location"] = request.build_absolute_uri(f"/api/imports/{job.pk}/")
    if failed:
        summary = "; ".join(f"{k}: {v}" for k, v in list(reasons.items())[:3])
        response["Warning"] = f'299 {request.get_host()} "{len(failed)} instance(s) not stored: {summary}"'[
            :1000
        ]
    return response


def _stored(sent: dict[str, tuple[str, str]], job: ImportJob) -> tuple[dict[str, Instance], set[str]]:
    """Instances this request stored (or found already stored), by the SOP UID the client sent:
    only in the scans of this job's report, so a client that reuses UIDs it has seen elsewhere
    gets nothing back but its own instances."""
    scan_ids = job.report.get("scans_created", []) + job.report.get("scans_existing", [])
    keys = uid_keys(job.institution)
    remapped = {pseudo.remap_uid(uid, key): uid for key in keys for _, uid in sent.values() if uid}
    found = Instance.objects.filter(
        scan_id__in=scan_ids, scan__study__institution=job.institution, sop_uid__in=list(remapped)
    ).select_related("scan__study")
    by_sent = {remapped[i.sop_uid]: i for i in found}
    return by_sent, {i.scan.study.study_uid for i in found}


@dicomweb_endpoint(("POST",))
def store_instances(request: HttpRequest, user: User, study: str | None = None) -> HttpResponse:
    return store(request, user, study)

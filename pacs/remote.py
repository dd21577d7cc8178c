"""Talking to a hospital's PACS: DICOMweb (QIDO-RS search, WADO-RS retrieve, STOW-RS store) with
dicomweb-client, and DIMSE (C-ECHO, C-STORE) with pynetdicom.

Every failure becomes RemoteError with a reason a data manager can act on ("the PACS refused the
credentials", "cannot reach …"), never a stack trace in a report.
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import pydicom
import requests
import retrying
from dicomweb_client.api import DICOMwebClient
from django.conf import settings
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from core.sealing import SealingKeyChanged
from pacs.models import RemotePacs

logger = logging.getLogger(__name__)

# (connect, read) seconds: a PACS may take a while to start streaming a large series.
TIMEOUT = (10, 300)
AS_STORED = (("application/dicom", "*"),)  # WADO-RS: no transcoding, whatever the PACS holds


class RemoteError(Exception):
    """The remote PACS could not do what was asked; the message says why."""


def our_ae_title() -> str:
    return getattr(settings, "CURATECT_AE_TITLE", "CURATECT")


def _session(remote: RemotePacs) -> requests.Session:
    session = requests.Session()
    if remote.auth_type == RemotePacs.Auth.NONE:
        return session
    try:
        secret = remote.secret_value()
    except SealingKeyChanged as exc:  # every caller reports a RemoteError's reason
        raise RemoteError(f"{remote.name}: {exc}") from None
    if remote.auth_type == RemotePacs.Auth.BASIC:
        session.auth = (remote.username, secret)
    elif remote.auth_type == RemotePacs.Auth.BEARER:
        session.headers["Authorization"] = f"Bearer {secret}"
    return session


def client_for(remote: RemotePacs) -> DICOMwebClient:
    if not remote.dicomweb_url:
        raise RemoteError(f"{remote.name} has no DICOMweb URL configured")
    client = DICOMwebClient(remote.dicomweb_url.rstrip("/"), session=_session(remote), timeout=TIMEOUT)
    # dicomweb-client's retry also retries every exception (a refused connection included):
    # three attempts wait 2 x then 4 x the multiplier in between, 3 s at the default 500 ms.
    wait_ms = int(getattr(settings, "PACS_HTTP_RETRY_WAIT_MS", 500))
    client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=wait_ms)
    return client


def _explain(remote: RemotePacs, exc: Exception) -> RemoteError:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        hint = {
            401: "the PACS refused the credentials; check the username and password or token",
            403: "the PACS does not allow this account to do that",
            404: "the PACS does not know this resource (check the DICOMweb URL and the UIDs)",
        }.get(status, (exc.response.text or "")[:200].strip())
        return RemoteError(f"{remote.name} answered HTTP {status}: {hint}")
    if isinstance(exc, requests.ConnectionError):
        return RemoteError(
            f"cannot reach {remote.name} at {remote.dicomweb_url}: is the URL right and the PACS up?"
        )
    if isinstance(exc, requests.Timeout):
        return RemoteError(f"{remote.name} did not answer in time")
    return RemoteError(f"{remote.name}: {exc}")


def _call(remote: RemotePacs, func: Callable, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except RemoteError:
        raise
    except (requests.RequestException, ValueError, OSError) as exc:
        raise _explain(remote, exc) from exc
    except retrying.RetryError as exc:  # dicomweb-client retries 429/503/504 a few times
        raise RemoteError(f"{remote.name} stayed unavailable (HTTP 429/503/504) after retries") from exc


# --- DICOMweb -------------------------------------------------------------------------------


def search_studies(
    remote: RemotePacs, filters: dict, *, limit: int = 100, offset: int = 0, get_remaining: bool = False
) -> list[dict]:
    client = client_for(remote)
    return _call(
        remote,
        client.search_for_studies,
        search_filters=filters or None,
        limit=limit,
        offset=offset,
        get_remaining=get_remaining,
    )


def search_series(remote: RemotePacs, study_uid: str, filters: dict | None = None) -> list[dict]:
    client = client_for(remote)
    return _call(remote, client.search_for_series, study_uid, search_filters=filters or None)


def search_instances(remote: RemotePacs, study_uid: str, series_uid: str) -> list[dict]:
    client = client_for(remote)
    return _call(remote, client.search_for_instances, study_uid, series_uid, get_remaining=True)


def instance_metadata(remote: RemotePacs, study_uid: str, series_uid: str, sop_uid: str) -> dict:
    client = client_for(remote)
    return _call(remote, client.retrieve_instance_metadata, study_uid, series_uid, sop_uid)


def retrieve_series_to(
    remote: RemotePacs,
    study_uid: str,
    series_uid: str,
    folder: Path,
    on_instance: Callable[[Path, Dataset], None] | None = None,
    client: DICOMwebClient | None = None,
) -> int:
    """WADO-RS retrieve of one series, each instance written to `folder` as it streams in;
    `on_instance(path, dataset)` is told of each one."""
    client = client or client_for(remote)
    folder.mkdir(parents=True, exist_ok=True)

    def fetch() -> int:
        n = 0
        for ds in client.iter_series(study_uid, series_uid, media_types=AS_STORED):
            tmp = folder / f".{uuid.uuid4().hex}.part"
            path = folder / f"{uuid.uuid4().hex}.dcm"
            raw = getattr(ds, "buffer", None)
            if isinstance(raw, io.BytesIO):
                # The part as the PACS sent it: writing it back through pydicom cost this
                # (receiving) thread about 2 ms per instance, and the ingest reads it anew.
                tmp.write_bytes(raw.getbuffer())
            else:
                ds.save_as(tmp, enforce_file_format=True)
            os.replace(tmp, path)
            n += 1
            if on_instance:
                on_instance(path, ds)
        return n

    return _call(remote, fetch)


def stow(remote: RemotePacs, datasets: list[Dataset]) -> Dataset:
    """STOW-RS; raises RemoteError unless every instance was stored."""
    client = client_for(remote)
    response = _call(remote, client.store_instances, datasets)
    failed = list(getattr(response, "FailedSOPSequence", []) or [])
    if failed:
        reasons = ", ".join(
            f"{item.get('ReferencedSOPInstanceUID', '?')}: {item.get('FailureReason', '?')}"
            for item in failed
        )
        raise RemoteError(f"{remote.name} refused {len(failed)} instance(s) ({reasons})")
    return response


# --- DIMSE ----------------------------------------------------------------------------------


def _associate(remote: RemotePacs, contexts: Iterable[tuple[str, list[str]]]):
    if not (remote.host and remote.port and remote.ae_title):
        raise RemoteError(f"{remote.name} needs an AE title, host and port for DICOM (DIMSE)")
    ae = AE(ae_title=our_ae_title())
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, syntaxes)
    assoc = ae.associate(remote.host, remote.port, ae_title=remote.ae_title)
    if assoc.is_rejected:
        raise RemoteError(
            f"{remote.name} rejected the association: is {our_ae_title()} a known AE title at {remote.ae_title}?"
        )
    if not assoc.is_established:
        raise RemoteError(f"cannot reach {remote.name} at {remote.host}:{remote.port} over DICOM")
    return assoc


def echo(remote: RemotePacs) -> None:
    assoc = _associate(remote, [(Verification, [pydicom.uid.ImplicitVRLittleEndian])])
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or status.Status != 0x0000:
        raise RemoteError(f"{remote.name} did not answer C-ECHO with success")


def cstore(remote: RemotePacs, datasets: list[Dataset]) -> None:
    """C-STORE every dataset in one association; raises RemoteError unless all succeeded."""
    contexts = {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}
    assoc = _associate(remote, [(sop, [ts]) for sop, ts in sorted(contexts)])
    failures = []
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None or code not in (0x0000, 0xB000, 0xB007, 0xB006):  # success or warnings
                failures.append(
                    f"{ds.SOPInstanceUID}: status {code if code is not None else 'none (no answer)'}"
                )
    finally:
        if assoc.is_established:
            assoc.release()
    if failures:
        raise RemoteError(f"{remote.name} did not store {len(failures)} instance(s): {'; '.join(failures)}")

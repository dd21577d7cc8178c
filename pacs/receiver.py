"""The C-STORE receiver: a DICOM storage SCP that feeds received CT series into ingest.

* Negotiation: only CT Image Storage (in every transfer syntax pydicom can decode here) and
  Verification (C-ECHO) are accepted; other SOP classes are refused per presentation context,
  logged, and listed in the import report of that delivery.
* The calling AE title selects the institution (`Institution.allowed_ae_titles`); an unknown or
  ambiguous one, or a wrong called AE title, gets the association rejected.
* Files are spooled per series, in a folder of the association that brought them; only a normal
  A-RELEASE commits them (a marker file makes that survive a restart). An association aborted
  mid-series (A-ABORT or a dropped connection) discards the series it touched, so nothing is
  half-imported — the sender's retry delivers it whole.
* A series is imported once no association is sending it and it is complete (when the sender
  says how many instances it has) or quiet for `quiet_seconds`: one ImportJob, through the
  ingest service (pseudonymise, group, check, store atomically), then its folder goes.
* Speed: every instance is prepared (read, checked, pseudonymised: the costly part of ingest)
  as soon as it is spooled, by a warm pool of worker processes, so that work overlaps the
  transfer and the quiet period; the import itself then only groups, checks and stores. Results
  of an aborted delivery are thrown away with its series. With `ingest="celery"` the listener
  only spools, and an ingest worker imports the series folder.

Spool: see spool.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from django.db import close_old_connections, connection
from pydicom import uid as uids
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.pixels.decoders.base import get_decoder
from pynetdicom import AE, evt
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.sop_class import CTImageStorage, Verification

from core.jobs.services import jobs_sweep
from core.models import Institution
from imaging.ingest.cleanup import scans_tmp_sweep
from imaging.ingest.reader import prepare_or_reason
from imaging.ingest.store import pseudonym_key
from imaging.models import ImportJob
from pacs import intake
from pacs.spool import (
    COMMITTED,
    SpooledSeries,
    file_name,
    import_series,
    origin_of,
    recovered_series,
    report_refused_delivery,
    series_key,
)
from pacs.workers import prepare_pool

logger = logging.getLogger(__name__)

# Why an import the listener was killed in (or stopped hard) ends failed at its restart.
LISTENER_STOPPED = (
    "the DICOM listener stopped (crash or restart) during this import; the instances it had "
    "received whole stay in its spool and are imported again as a new import, so nothing needs to be sent again"
)
# DIMSE C-STORE statuses (PS3.4 Annex B.2.3).
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_SOP_CLASS_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000

# The last tag the receiver reads of a dataset (NumberOfSeriesRelatedInstances); every one it
# needs (the series, the SOP class, the original study attributes kept for sending back) is before it.
_LAST_HEADER_TAG = 0x00201209
# pynetdicom's logging handlers, bound to every association: they summarise each message even
# when nothing logs it, in the thread that receives.
_LOG_HANDLERS = (
    (evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
    (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
    (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
    (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
)

_NATIVE_SYNTAXES = [
    uids.ExplicitVRLittleEndian,
    uids.ImplicitVRLittleEndian,
    uids.DeflatedExplicitVRLittleEndian,
    uids.ExplicitVRBigEndian,
]


def _decodable(ts: uids.UID) -> bool:
    try:
        return get_decoder(ts).is_available
    except (NotImplementedError, ValueError):
        return False


def accepted_transfer_syntaxes() -> list[str]:
    """Uncompressed syntaxes plus every compressed one an installed pydicom plugin decodes
    (JPEG lossless/baseline, JPEG-LS, JPEG 2000, HTJ2K, RLE with pylibjpeg/pyjpegls)."""
    compressed = [
        ts for ts in uids.AllTransferSyntaxes if uids.UID(ts).is_compressed and _decodable(uids.UID(ts))
    ]
    return [*_NATIVE_SYNTAXES, *compressed]


@dataclass
class _Association:
    ident: int  # id() of pynetdicom's Association object
    calling_ae: str
    peer: str
    institution_id: int
    institution_slug: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    pending: dict[str, dict[str, str]] = field(default_factory=dict)  # series key -> file name -> SOP UID
    received: int = 0
    notes: list[dict] = field(default_factory=list)  # refused instances without a series
    refused: list[dict] = field(default_factory=list)  # refused presentation contexts
    folders: set[str] = field(default_factory=set)  # series keys whose folder exists
    closed: bool = False

    @property
    def sender(self) -> str:
        return f"{self.calling_ae}@{self.peer}"


class StorageReceiver:
    """The storage SCP and its spool. `start()` serves in background threads; `stop()` ends.

    ingest: "inline" (prepare and import in this process) or "celery" (spool, then queue).
    workers: processes that prepare instances (0: one thread of this process instead).
    """

    def __init__(
        self,
        *,
        ae_title: str = "CURATECT",
        host: str = "0.0.0.0",
        port: int = 11112,
        quiet_seconds: float = 10.0,
        spool: Path | None = None,
        ingest: str = "inline",
        workers: int = 0,
        poll_seconds: float = 0.1,
    ) -> None:
        if ingest not in ("inline", "celery"):
            raise ValueError("ingest is 'inline' or 'celery'")
        self.ae_title = ae_title
        self.host = host
        self.port = port
        self.quiet_seconds = quiet_seconds
        self.spool = spool or (intake.spool_root() / "dimse")
        self.ingest = ingest
        self.workers = workers
        self.poll_seconds = poll_seconds
        # The name its imports are claimed under: the same after a restart on the same port, so
        # the restart can end what the killed listener left running. On port 0 (any free port)
        # it is this process's own; then the periodic job sweep ends such leftovers.
        self.claimant = f"dicom-listener@{socket.gethostname()}:" + (
            str(port) if port else f"pid{os.getpid()}"
        )
        self._lock = threading.Lock()
        self._series: dict[tuple[int, str], SpooledSeries] = {}
        self._assocs: dict[int, _Association] = {}
        self._closing: dict[int, tuple[_Association, object]] = {}  # closed, not yet judged
        self._server = None
        self._pool: Executor | None = None
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        if self.ingest == "inline":
            self._pool = prepare_pool(self.workers, leave_core=True)
        # A killed listener's prepared copies (its staging folders under media/scans) are
        # never imported: recovery prepares the spooled files again, under a new import; the
        # import it was killed in ends failed, saying so.
        scans_tmp_sweep()
        jobs_sweep(self.claimant, kinds=[ImportJob], reason=LISTENER_STOPPED)
        self._recover()
        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = True
        ae.maximum_pdu_size = 0  # no limit: fewer, larger PDUs are faster on a LAN
        ae.network_timeout = 60
        ae.dimse_timeout = 60
        ae.add_supported_context(CTImageStorage, accepted_transfer_syntaxes())
        ae.add_supported_context(Verification)
        handlers = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, lambda event: STATUS_SUCCESS),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_CONN_CLOSE, self._on_closed),
        ]
        self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        self.port = self._server.server_address[1]  # the real one when asked for port 0
        self._stop.clear()
        self._flusher = threading.Thread(target=self._flush_loop, name="dicom-flusher", daemon=True)
        self._flusher.start()
        logger.info(
            "DICOM listener %s on %s:%s (CT Image Storage + Verification), quiet %.1fs, ingest %s, spool %s",
            self.ae_title,
            self.host,
            self.port,
            self.quiet_seconds,
            self.ingest,
            self.spool,
        )

    def stop(self) -> None:
        """Stop accepting; the running import finishes, waiting series stay spooled for the
        next start."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=600)
            self._flusher = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self._lock:
            for series in self._series.values():
                if series.staging is not None:
                    shutil.rmtree(series.staging, ignore_errors=True)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """True once nothing is spooled or importing (for tests and the benchmark)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = bool(self._series) or bool(self._assocs)
            if not busy and self._idle.is_set():
                return True
            time.sleep(0.02)
        return False

    # --- association events (run in pynetdicom's threads) -----------------------------------

    def _on_requested(self, event: evt.Event) -> None:
        assoc = event.assoc
        calling = assoc.requestor.primitive.calling_ae_title.strip()
        peer = f"{assoc.requestor.address}:{assoc.requestor.port}"
        try:
            matches = institutions_for_ae(calling)
        finally:
            connection.close()  # this thread is pynetdicom's; never leave a connection behind
        if len(matches) != 1:
            why = (
                "is not allowed for any institution" if not matches else "is allowed for several institutions"
            )
            logger.warning("DICOM association from %s (%s) rejected: calling AE title %s", calling, peer, why)
            assoc.acse.send_reject(0x01, 0x01, 0x03)  # permanent, service user, calling AE not recognised
            assoc.kill()  # as pynetdicom does: waits until the reject is sent before the socket closes
            return
        if not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
            for event_type, handler in _LOG_HANDLERS:
                assoc.unbind(event_type, handler)
        with self._lock:
            self._assocs[id(assoc)] = _Association(id(assoc), calling, peer, *matches[0])

    def _on_accepted(self, event: evt.Event) -> None:
        classes = sorted({str(cx.abstract_syntax) for cx in event.assoc.rejected_contexts})
        if not classes:
            return
        refused = [
            {
                "sop_class": uid,
                "name": uids.UID(uid).name,
                "reason": "only CT Image Storage is accepted; the SOP class was refused at association negotiation",
            }
            for uid in classes
        ]
        with self._lock:
            state = self._assocs.get(id(event.assoc))
            if state is None:
                return
            state.refused = refused
        logger.warning(
            "DICOM association from %s: refused %s", state.sender, ", ".join(r["name"] for r in refused)
        )

    def _on_store(self, event: evt.Event) -> int:
        with self._lock:
            state = self._assocs.get(id(event.assoc))
        if state is None:
            return STATUS_OUT_OF_RESOURCES
        sop_uid = str(event.request.AffectedSOPInstanceUID)
        try:
            ds = _header(event)
            series_uid = str(ds.get("SeriesInstanceUID", "") or "")
            dataset_class = str(ds.get("SOPClassUID", "") or "")
            expected = ds.get("NumberOfSeriesRelatedInstances")
        except Exception as exc:  # pydicom raises many types on a damaged dataset
            return self._refuse(
                state, sop_uid, f"the dataset cannot be decoded ({exc})", STATUS_CANNOT_UNDERSTAND
            )
        if dataset_class != str(event.context.abstract_syntax):
            return self._refuse(
                state,
                sop_uid,
                f"the dataset's SOP class {uids.UID(dataset_class).name or 'missing'} differs from the negotiated "
                "CT Image Storage; refused",
                STATUS_SOP_CLASS_MISMATCH,
                series_uid,
            )
        if not series_uid:
            return self._refuse(state, sop_uid, "missing SeriesInstanceUID", STATUS_CANNOT_UNDERSTAND)
        try:
            data = _encoded_file(event)
        except Exception as exc:
            return self._refuse(
                state, sop_uid, f"the dataset cannot be encoded ({exc})", STATUS_CANNOT_UNDERSTAND
            )
        key = series_key(series_uid)
        folder = self._association_folder(state, key, ds, series_uid, expected)
        name = file_name(sop_uid)
        try:
            _spool_write(folder / name, data)
        except OSError as exc:
            logger.error("DICOM listener cannot spool %s: %s", sop_uid, exc)
            return STATUS_OUT_OF_RESOURCES
        with self._lock:
            state.pending.setdefault(key, {})[name] = sop_uid
            state.received += 1
            series = self._series.get((state.institution_id, key))
            if series is not None:
                series.last = time.monotonic()
                self._prepare(series, folder / name, f"instance {sop_uid}")
        return STATUS_SUCCESS

    def _on_released(self, event: evt.Event) -> None:
        with self._lock:
            state = self._assocs.get(id(event.assoc))
            if state is None or state.closed:
                return
            self._commit_association(state)
        self._after_close(state, "released")

    def _on_closed(self, event: evt.Event) -> None:
        # pynetdicom fires this from its socket thread, which may see the peer hang up after an
        # A-RELEASE before the reactor thread has fired EVT_RELEASED. So an unreleased close is
        # only judged once the association's thread has ended (see _judge_closed).
        with self._lock:
            state = self._assocs.get(id(event.assoc))
            if state is None:
                return
            if state.closed:
                del self._assocs[id(event.assoc)]
                return
            self._closing[state.ident] = (state, event.assoc)

    def _judge_closed(self) -> None:
        """Closed associations whose thread has ended: released after all, or aborted."""
        judged = []
        with self._lock:
            for ident, (state, assoc) in list(self._closing.items()):
                if state.closed:
                    del self._closing[ident]
                    self._assocs.pop(ident, None)
                    continue
                if assoc.is_alive():
                    continue
                del self._closing[ident]
                self._assocs.pop(ident, None)
                if assoc.is_released:
                    self._commit_association(state)
                    judged.append((state, "released"))
                else:
                    self._abort_association(state)
                    judged.append((state, "aborted"))
        for state, how in judged:
            self._after_close(state, how)

    def _commit_association(self, state: _Association) -> None:
        """A normal release (lock held): the association's files join their series."""
        state.closed = True
        for key, names in state.pending.items():
            series = self._series[(state.institution_id, key)]
            (series.folder / state.token / COMMITTED).touch()
            series.committed.update(names)
            series.open.discard(state.ident)
            series.refused.extend(r for r in state.refused if r not in series.refused)
            series.last = time.monotonic()

    def _abort_association(self, state: _Association) -> None:
        """An abort or a dropped connection (lock held): every series it touched is discarded."""
        state.closed = True
        why = (
            f"the association from {state.sender} was aborted after {state.received} instance(s); "
            "nothing of this series was imported — send the series again"
        )
        for key in state.pending:
            series = self._series[(state.institution_id, key)]
            shutil.rmtree(series.folder / state.token, ignore_errors=True)
            series.open.discard(state.ident)
            series.tainted = series.tainted or why
            series.last = time.monotonic()

    def _after_close(self, state: _Association, how: str) -> None:
        log = logger.info if how == "released" else logger.warning
        log("DICOM association from %s %s after %d instance(s)", state.sender, how, state.received)
        if not state.pending and (state.refused or state.notes):
            self._report_without_series(state)

    # --- spool ----------------------------------------------------------------------------------

    def _association_folder(
        self, state: _Association, key: str, ds, series_uid: str, expected: object
    ) -> Path:
        with self._lock:
            series = self._series.get((state.institution_id, key))
            if series is None:
                folder = self.spool / str(state.institution_id) / f"{key}-{uuid.uuid4().hex[:8]}"
                series = SpooledSeries(
                    key, state.institution_id, state.institution_slug, folder, time.monotonic()
                )
                self._series[(state.institution_id, key)] = series
            if series.origin is None:
                series.origin = origin_of(ds, series_uid)
            series.open.add(state.ident)
            series.senders.add(state.sender)
            with contextlib.suppress(TypeError, ValueError):  # a malformed count is no count
                series.expected = int(expected) if expected not in (None, "") else series.expected  # type: ignore[arg-type]
            folder = series.folder / state.token
            made = key in state.folders
            state.folders.add(key)
        if not made:  # once per association and series: each system call here delays the response
            folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _prepare(self, series: SpooledSeries, path: Path, label: str) -> None:
        """Start preparing one spooled file (lock held). A re-sent instance (same name, same
        content) is prepared once."""
        if self._pool is None or path.name in series.prepared:
            return
        if series.staging is None:
            series.staging = intake.staging_folder()
        prepare = partial(
            prepare_or_reason,
            staging=series.staging,
            key=pseudonym_key(),
            issuer_prefix=series.institution_slug,
        )
        series.prepared[path.name] = self._pool.submit(prepare, (path, label))

    def _refuse(
        self, state: _Association, sop_uid: str, reason: str, status: int, series_uid: str = ""
    ) -> int:
        entry = {"file": f"C-STORE {sop_uid} from {state.sender}", "reason": reason}
        logger.warning("DICOM listener refused %s: %s", entry["file"], reason)
        with self._lock:
            series = self._series.get((state.institution_id, series_key(series_uid))) if series_uid else None
            if series is not None:
                series.rejected.append(entry)
            else:
                state.notes.append(entry)
        return status

    def _recover(self) -> None:
        for series, paths in recovered_series(self.spool):
            for path in paths:
                self._prepare(series, path, f"file {path.name}")
            # Not under its key: a new delivery of the same series gets its own folder.
            self._series[(series.institution_id, series.folder.name)] = series

    def _report_without_series(self, state: _Association) -> None:
        """A delivery that brought no usable instance still leaves a report for the data manager."""
        try:
            report_refused_delivery(
                state.institution_id, state.sender, state.notes, state.refused, state.received
            )
        finally:
            connection.close()

    # --- flushing -------------------------------------------------------------------------------

    def _ready(self, now: float) -> list[SpooledSeries]:
        ready = []
        for ident, series in list(self._series.items()):
            if series.open:
                continue
            complete = series.expected is not None and len(series.committed) >= series.expected
            if series.tainted or complete or now - series.last >= self.quiet_seconds:
                del self._series[ident]  # a new delivery of the same series starts a new folder
                ready.append(series)
        return ready

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            self._judge_closed()
            with self._lock:
                ready = self._ready(time.monotonic())
                if ready:
                    self._idle.clear()
            for series in ready:
                queued = False
                try:
                    queued = import_series(series, ingest=self.ingest, spool=self.spool, worker=self.claimant)
                except Exception:
                    logger.exception("DICOM listener: import of a received series failed")
                finally:
                    if series.staging is not None:
                        shutil.rmtree(series.staging, ignore_errors=True)
                    if not queued:
                        shutil.rmtree(series.folder, ignore_errors=True)
                    close_old_connections()
                    connection.close()
            if ready:
                self._idle.set()
            self._stop.wait(self.poll_seconds)


def _header(event: evt.Event) -> Dataset:
    """The dataset's elements up to the last one the receiver reads, not the whole dataset:
    pynetdicom's `event.dataset` reads every element and copies the pixel data, all in the
    thread that receives while the sender waits for the response."""
    ts = event.context.transfer_syntax
    if ts.is_deflated:
        return event.dataset
    ds = read_dataset(
        DicomBytesIO(event.request.DataSet.getvalue()),  # shares the received bytes, no copy
        ts.is_implicit_VR,
        ts.is_little_endian,
        stop_when=lambda tag, vr, length: tag > _LAST_HEADER_TAG,
    )
    ds.set_original_encoding(ts.is_implicit_VR, ts.is_little_endian)
    return ds


def _encoded_file(event: evt.Event) -> list:
    """The received instance in the DICOM file format (as `event.encoded_dataset()` makes it),
    in pieces: joining them copied half a megabyte per instance for one write."""
    return [b"\x00" * 128, b"DICM", encode_file_meta(event.file_meta), event.request.DataSet.getvalue()]


def _spool_write(path: Path, data: bytes | list) -> None:
    """Write a received instance. A new file is written in place: if the listener dies
    mid-write, the file belongs to a delivery that was never released, which recovery drops
    (and a failed write removes its file). A re-sent instance replaces the old file
    atomically, since a worker may be reading it."""
    chunks = data if isinstance(data, list) else [data]
    try:
        with open(path, "xb") as f:
            try:
                f.writelines(chunks)
            except OSError:  # disk full: leave no truncated file for a later recovery to find
                path.unlink(missing_ok=True)
                raise
    except FileExistsError:
        tmp = path.with_name(f".{uuid.uuid4().hex}.part")
        with open(tmp, "wb") as f:
            f.writelines(chunks)
        os.replace(tmp, path)


def institutions_for_ae(calling_ae: str) -> list[tuple[int, str]]:
    """(id, slug) of the institutions whose PACS may send from this AE title (exact match: AE
    titles are case sensitive; surrounding spaces are padding)."""
    return [
        (pk, slug)
        for pk, slug, titles in Institution.objects.values_list("pk", "slug", "allowed_ae_titles")
        if calling_ae in {str(t).strip() for t in (titles or [])}
    ]

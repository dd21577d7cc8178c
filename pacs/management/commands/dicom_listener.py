"""manage.py dicom_listener --port 11112 --ae-title CURATECT [--quiet-seconds 10] [--ingest inline|celery]"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pacs import receiver


class Command(BaseCommand):
    help = (
        "Run the DICOM C-STORE receiver: accepts CT Image Storage and C-ECHO from the calling AE "
        "titles institutions allow, and imports each series once it is complete or quiet."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
        parser.add_argument("--port", type=int, default=11112, help="TCP port (default 11112)")
        parser.add_argument("--ae-title", default="CURATECT", help="our AE title; callers must address it")
        parser.add_argument(
            "--quiet-seconds",
            type=float,
            default=10.0,
            help="import a series once nothing arrived for it for this long (default 10)",
        )
        parser.add_argument(
            "--ingest",
            choices=["inline", "celery"],
            default="inline",
            help="import in this process (default) or on the Celery ingest queue",
        )
        parser.add_argument("--spool", type=Path, help="spool folder (default DATA_DIR/pacs-spool/dimse)")
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="processes that pseudonymise received instances (default CURATECT_INGEST_WORKERS; 0: a thread)",
        )

    def handle(
        self,
        *args,
        host: str,
        port: int,
        ae_title: str,
        quiet_seconds: float,
        ingest: str,
        spool: Path | None,
        workers: int | None,
        **opts,
    ):
        if not 1 <= len(ae_title.strip()) <= 16 or "\\" in ae_title:
            raise CommandError("--ae-title must be 1 to 16 characters without a backslash")
        if quiet_seconds < 0:
            raise CommandError("--quiet-seconds must not be negative")
        listener = receiver.StorageReceiver(
            ae_title=ae_title.strip(),
            host=host,
            port=port,
            quiet_seconds=quiet_seconds,
            spool=spool,
            ingest=ingest,
            workers=settings.INGEST_WORKERS if workers is None else max(0, workers),
        )
        if opts["verbosity"] < 2:
            logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # one line per instance otherwise
        try:
            listener.start()
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from exc
        self.stdout.write(f"DICOM listener {listener.ae_title} on {host}:{listener.port}; Ctrl-C to stop")
        self.stdout.flush()
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(1.0):
            pass
        self.stdout.write("stopping: the running import finishes, waiting series stay spooled")
        listener.stop()

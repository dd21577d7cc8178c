"""Fixtures for the PACS tests: our listener, real DICOM peers on loopback, waiting helpers.

Peers (Debian packages; make test installs them): dcmtk (storescu, echoscu, dcmcjpls…), orthanc with
its DICOMweb plugin, dicom3tools (dciodvfy). A test needing one that is absent is skipped with
the package name; nothing here downloads anything.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

ORTHANC_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
ORTHANC_USER, ORTHANC_PASSWORD = "curatect", "orthanc-secret"
SENDER_AE = "HOSP_A"


def need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} not found: apt-get install {package} (make dicom-peers installs it)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(autouse=True)
def _fast_settings(settings):
    """The cast's eight users are created per test (PBKDF2 would cost seconds each time), and
    instances are prepared by a thread (starting worker processes costs seconds per test; the
    process pool has its own test)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.INGEST_WORKERS = 0


@pytest.fixture
def sender_allowed(cast):
    """The cast's institution accepts C-STORE from AE title HOSP_A."""
    cast.institution.allowed_ae_titles = [SENDER_AE]
    cast.institution.save(update_fields=["allowed_ae_titles"])
    return cast


def start_listener(tmp_path: Path, **options):
    from pacs.receiver import StorageReceiver

    receiver = StorageReceiver(
        ae_title="CURATECT",
        host="127.0.0.1",
        port=0,
        spool=tmp_path / "spool",
        poll_seconds=0.05,
        **{"quiet_seconds": 0.3, **options},
    )
    receiver.start()
    return receiver


@pytest.fixture
def listener(sender_allowed, tmp_path):
    """Our storage SCP on a free loopback port, importing a series 0.3 s after it went quiet."""
    receiver = start_listener(tmp_path)
    yield receiver
    receiver.stop()


def storescu(
    receiver, *paths: Path, calling: str = SENDER_AE, called: str = "CURATECT", options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    binary = need("storescu", "dcmtk")
    return subprocess.run(
        [
            binary,
            "-aet",
            calling,
            "-aec",
            called,
            *options,
            "+sd",
            "+r",
            "127.0.0.1",
            str(receiver.port),
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


class Orthanc:
    """A real Orthanc PACS with the DICOMweb plugin on loopback, HTTP Basic auth on."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.http_port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        self.ae_title = "ORTHANC"
        self.auth = (ORTHANC_USER, ORTHANC_PASSWORD)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        config = {
            "Name": "CurateCT test PACS",
            "StorageDirectory": str(self.root / "storage"),
            "IndexDirectory": str(self.root / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.ae_title,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {ORTHANC_USER: ORTHANC_PASSWORD},
            "Plugins": [str(ORTHANC_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full"},
            "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": False,
            "ConcurrentJobs": 1,
            "StableAge": 1,
        }
        (self.root / "orthanc.json").write_text(json.dumps(config))
        with open(self.root / "orthanc.log", "wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [shutil.which("Orthanc"), str(self.root / "orthanc.json")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._up, 30, "Orthanc to start")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError("Orthanc exited: " + (self.root / "orthanc.log").read_text()[-2000:])
        try:
            return requests.get(f"{self.url}/system", auth=self.auth, timeout=2).ok
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None

    def upload(self, folder: Path) -> int:
        """Store every file of a folder through Orthanc's REST API; returns how many."""
        n = 0
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix == ".dcm"):
            response = requests.post(
                f"{self.url}/instances", data=path.read_bytes(), auth=self.auth, timeout=30
            )
            response.raise_for_status()
            n += 1
        return n

    def clear(self) -> None:
        for study in requests.get(f"{self.url}/studies", auth=self.auth, timeout=10).json():
            requests.delete(f"{self.url}/studies/{study}", auth=self.auth, timeout=10).raise_for_status()


@pytest.fixture(scope="session")
def orthanc_server(tmp_path_factory):
    """One Orthanc for the session (started on first use, stopped at the end); tests clear it."""
    need("Orthanc", "orthanc")
    if not ORTHANC_PLUGIN.exists():
        pytest.skip(f"{ORTHANC_PLUGIN} not found: apt-get install orthanc-dicomweb (make dicom-peers)")
    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def orthanc(orthanc_server):
    orthanc_server.clear()
    yield orthanc_server
    orthanc_server.clear()


def orthanc_remote(institution, server: Orthanc):
    """The institution's remote PACS entry for a running Orthanc (DICOMweb with Basic auth, STOW sends)."""
    from pacs.models import RemotePacs

    remote = RemotePacs(
        institution=institution,
        name="Orthanc",
        dicomweb_url=server.dicomweb_url,
        auth_type=RemotePacs.Auth.BASIC,
        username=server.auth[0],
        ae_title=server.ae_title,
        host="127.0.0.1",
        port=server.dicom_port,
        send_method="stow",
    )
    remote.set_secret(server.auth[1])
    remote.save()
    return remote

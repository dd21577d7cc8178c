"""PACS throughput on loopback, end to end.

cstore_per_s: a phantom CT series sent by C-STORE (dcmtk's storescu, else pynetdicom) into our
  listener, from the first byte sent until the scan exists (receive, spool, quiet period,
  pseudonymise, check, store).
wado_pull_per_s: the same kind of series pulled from a real Orthanc by WADO-RS through a pull job,
  from the job's start until the scan exists (retrieve, spool, ingest); wado_retrieve_per_s is
  the retrieval alone.
orthanc_cstore_per_s: the same series sent the same way into a real Orthanc (Debian's, on loopback,
  SQLite index, a throwaway storage folder) in the same run, right after CurateCT got it: the PACS
  beside us. cstore_ratio_to_orthanc is cstore_per_s / orthanc_cstore_per_s (each series' own
  pair in cstore_ratio_runs): on a shared machine the ratio of one run means more than either rate.
Each is the median of three series (cstore_runs_per_s and wado_pull_runs_per_s list all three).
Every DCMTK process (storescu, Orthanc) runs with TCP_NODELAY=1: without it DCMTK leaves Nagle's
algorithm on and delayed ACKs cap each near 22 instances/s on loopback.
*_cpu_ms_per_instance: CPU of every process involved (sender or Orthanc, listener, its workers)
  per instance — what the rate would be limited by on a machine with free cores.

Prints JSON on its last line. Options: --slices N --size PX --quiet-seconds S.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _django

RUNS = 3


def _dcmtk_env() -> dict[str, str]:
    """DCMTK (storescu, and Orthanc, built on it) disables Nagle's algorithm only when asked."""
    return {**os.environ, "TCP_NODELAY": "1"}


def _storescu(folder: Path, port: int, called: str) -> None:
    subprocess.run(
        ["storescu", "-aet", "BENCH", "-aec", called, "+sd", "127.0.0.1", str(port), str(folder)],
        check=True,
        capture_output=True,
        timeout=600,
        env=_dcmtk_env(),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition, timeout: float, what: str, every: float = 0.01):
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def _cpu() -> float:
    """CPU seconds of this process and of its children that have ended."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _proc_cpu(pid: int) -> float:
    """CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_cstore(folder: Path, n: int, quiet: float, inst) -> dict:
    from django.conf import settings

    from core.models import Scan
    from pacs.receiver import StorageReceiver

    receiver = StorageReceiver(
        ae_title="CURATECT",
        host="127.0.0.1",
        port=0,
        quiet_seconds=quiet,
        spool=Path(tempfile.mkdtemp(prefix="curatect-spool-")),
        poll_seconds=0.02,
        workers=settings.INGEST_WORKERS,
    )
    before = Scan.objects.filter(slices=n, study__institution=inst).count()
    receiver.start()  # starts its worker processes too
    workers = list(getattr(receiver._pool, "_processes", {}) or {})  # pids, to count their CPU
    try:
        cpu0 = _cpu() + sum(_proc_cpu(pid) for pid in workers)
        t0 = time.perf_counter()
        if shutil.which("storescu"):
            sender = "storescu"
            _storescu(folder, receiver.port, "CURATECT")
        else:
            sender = "pynetdicom"
            _send_pynetdicom(folder, receiver.port)
        sent = time.perf_counter()
        # Polled every 50 ms: the observer's own queries would otherwise take CPU from the
        # listener on a small machine.
        _wait(
            lambda: Scan.objects.filter(slices=n, study__institution=inst).count() > before,
            600,
            "the received scan",
            every=0.05,
        )
        done = time.perf_counter()
        cpu = _cpu() + sum(_proc_cpu(pid) for pid in workers) - cpu0
    finally:
        receiver.stop()
    return {
        "sender": sender,
        "cstore_send_s": round(sent - t0, 3),
        "cstore_total_s": round(done - t0, 3),
        "cstore_per_s": round(n / (done - t0), 1),
        "cstore_cpu_ms_per_instance": round(1000 * cpu / n, 1),
    }


def _send_pynetdicom(folder: Path, port: int) -> None:
    import pydicom
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    ae = AE(ae_title="BENCH")
    ae.add_requested_context(CTImageStorage, pydicom.uid.ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="CURATECT")
    for path in sorted(folder.rglob("*.dcm")):
        assoc.send_c_store(path)
    assoc.release()


@contextlib.contextmanager
def _orthanc():
    """A throwaway Orthanc on loopback: yields (HTTP URL, DICOM port, pid); stopped and its
    storage removed on the way out."""
    root = Path(tempfile.mkdtemp(prefix="curatect-orthanc-"))
    http, dimse = _free_port(), _free_port()
    (root / "orthanc.json").write_text(
        json.dumps(
            {
                "StorageDirectory": str(root / "db"),
                "IndexDirectory": str(root / "db"),
                "HttpPort": http,
                "DicomPort": dimse,
                "DicomAet": "ORTHANC",
                "DicomServerEnabled": True,
                "DicomAlwaysAllowStore": True,
                "RemoteAccessAllowed": False,
                "AuthenticationEnabled": False,
                "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
                "DicomWeb": {"Enable": True},
            }
        )
    )
    with open(root / "orthanc.log", "wb") as log:
        orthanc = subprocess.Popen(
            ["Orthanc", str(root / "orthanc.json")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_dcmtk_env(),
        )
    try:
        url = f"http://127.0.0.1:{http}"
        _wait(lambda: _up(url), 30, "Orthanc")
        yield url, dimse, orthanc.pid
    finally:
        orthanc.terminate()
        orthanc.wait(30)
        shutil.rmtree(root, ignore_errors=True)


def bench_orthanc_cstore(folder: Path, n: int, dimse: int, url: str) -> float:
    """Instances per second into Orthanc: storescu returns once Orthanc answered the last
    C-STORE, and Orthanc answers once the instance is stored and indexed."""
    import requests

    t0 = time.perf_counter()
    _storescu(folder, dimse, "ORTHANC")
    elapsed = time.perf_counter() - t0
    stored = requests.get(f"{url}/statistics", timeout=10).json()["CountInstances"]
    assert stored >= n, f"Orthanc holds {stored} instances, expected at least {n}"
    return round(n / elapsed, 1)


def bench_pull(folders: list[Path], n: int, inst, manager) -> list[dict]:
    """Each folder's series stored into one Orthanc, then pulled one pull job at a time."""
    import pydicom
    import requests

    from core.models import Scan
    from pacs import pulls
    from pacs.models import RemotePacs

    with _orthanc() as (url, _dimse, pid):
        study_uids = []
        for folder in folders:
            for path in sorted(folder.rglob("*.dcm")):
                requests.post(f"{url}/instances", data=path.read_bytes(), timeout=60).raise_for_status()
            first = next(folder.rglob("*.dcm"))
            study_uids.append(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)
        remote = RemotePacs.objects.create(institution=inst, name="bench", dicomweb_url=f"{url}/dicom-web")
        return [_pull_one(pulls, Scan, remote, manager, uid, n, pid) for uid in study_uids]


def _pull_one(pulls, Scan, remote, manager, study_uid: str, n: int, orthanc_pid: int) -> dict:
    job = pulls.pull_start(actor=manager, remote=remote, study_uids=[study_uid])
    marks = {}

    def progress(fraction: float, message: str) -> None:
        if fraction >= 0.5 and "retrieved" in message:
            marks.setdefault("retrieved", time.perf_counter())

    cpu0 = _cpu() + _proc_cpu(orthanc_pid)
    t0 = time.perf_counter()
    job = pulls.pull_run(job, progress)  # its worker processes end with it: their CPU counts
    done = time.perf_counter()
    cpu = _cpu() + _proc_cpu(orthanc_pid) - cpu0
    assert job.status == "done" and job.report["scans_created"], job.report
    assert Scan.objects.get(pk=job.report["scans_created"][0]).slices == n
    retrieved = marks.get("retrieved", done) - t0
    return {
        "wado_retrieve_s": round(retrieved, 3),
        "wado_retrieve_per_s": round(n / retrieved, 1),
        "wado_total_s": round(done - t0, 3),
        "wado_pull_per_s": round(n / (done - t0), 1),
        "wado_cpu_ms_per_instance": round(1000 * cpu / n, 1),
    }


def _median(runs: list[dict], key: str) -> dict:
    """The run with the median `key`, plus every run's figure under <key without _per_s>_runs_per_s."""
    ordered = sorted(runs, key=lambda r: r[key])
    return {**ordered[len(ordered) // 2], key.replace("_per_s", "_runs_per_s"): [r[key] for r in ordered]}


def _up(url: str) -> bool:
    import requests

    try:
        return requests.get(f"{url}/system", timeout=1).ok
    except requests.ConnectionError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--quiet-seconds", type=float, default=0.5)
    args = parser.parse_args()
    work = _django.setup()
    import logging

    logging.disable(logging.WARNING)  # per-instance logs would distort the timing
    inst, _campaign, people = _django.cast()
    inst.allowed_ae_titles = ["BENCH"]
    inst.save()
    results = {"slices": args.slices, "size": args.size, "quiet_seconds": args.quiet_seconds}
    try:
        # Three series each way, each series its own patient; the run with the median rate is
        # reported (this machine's speed wanders by ±15 % from one run to the next).
        def series(tag: str, i: int) -> Path:
            folder, _ = _django.phantom_series(
                work / f"{tag}{i}",
                slices=args.slices,
                rows=args.size,
                cols=args.size,
                seed=(1 if tag == "a" else 2) + 10 * i,
                patient_id=f"BENCH-{tag.upper()}{i}",
                patient_name=f"BENCH^{tag.upper()}{i}",
            )
            return folder

        runs = []
        with contextlib.ExitStack() as stack:
            orthanc = None
            if shutil.which("Orthanc") and shutil.which("storescu"):
                orthanc = stack.enter_context(_orthanc())
            for i in range(RUNS):
                folder = series("a", i)
                run = bench_cstore(folder, args.slices, args.quiet_seconds, inst)
                if orthanc is not None:
                    # The same files, right after: both see the same machine, as far as a
                    # shared one allows.
                    url, dimse, _pid = orthanc
                    run["orthanc_cstore_per_s"] = bench_orthanc_cstore(folder, args.slices, dimse, url)
                    run["cstore_ratio"] = round(run["cstore_per_s"] / run["orthanc_cstore_per_s"], 3)
                runs.append(run)
                shutil.rmtree(folder, ignore_errors=True)
        results |= _median(runs, "cstore_per_s")
        results.pop("orthanc_cstore_per_s", None)
        results.pop("cstore_ratio", None)
        if orthanc is not None:
            orthanc_rates = sorted(r["orthanc_cstore_per_s"] for r in runs)
            results["orthanc_cstore_per_s"] = orthanc_rates[len(orthanc_rates) // 2]
            results["orthanc_cstore_runs_per_s"] = orthanc_rates
            results["cstore_ratio_to_orthanc"] = round(
                results["cstore_per_s"] / results["orthanc_cstore_per_s"], 3
            )
            results["cstore_ratio_runs"] = [r["cstore_ratio"] for r in runs]
        else:
            results |= {
                "orthanc_cstore_per_s": None,
                "cstore_ratio_to_orthanc": None,
                "orthanc_note": "Orthanc or storescu not installed (apt-get install orthanc dcmtk)",
            }
        if shutil.which("Orthanc"):
            pulled = bench_pull([series("b", i) for i in range(RUNS)], args.slices, inst, people["manager"])
            results |= _median(pulled, "wado_pull_per_s")
        else:
            results |= {
                "wado_pull_per_s": None,
                "wado_note": "Orthanc not installed (apt-get install orthanc orthanc-dicomweb)",
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

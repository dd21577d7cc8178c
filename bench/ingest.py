"""Ingest throughput: a 300-slice 512×512 phantom series through the service the API uses.

Prints JSON with slices_per_s (end to end: read, check, pseudonymise, store, volume cache)
and ratio_to_pydicom (against plain pydicom.dcmread of the same files in the same run).
*_cpu_ms_per_slice: CPU of this process and its worker processes per slice, and
cpu_ratio_to_pydicom the same ratio in CPU: on a shared, busy machine the wall-clock ratio
mostly says how many cores the others left us, the CPU one what the code costs.
"""

from __future__ import annotations

import json
import resource
import shutil
import time

import _django

SLICES, SIZE = 300, 512


def _cpu() -> float:
    """CPU seconds of this process and of its children that have ended (the ingest's pool)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    work = _django.setup()
    import pydicom

    from imaging.ingest.service import ingest_path

    inst, campaign, _ = _django.cast()
    folder, _ = _django.phantom_series(
        work / "series",
        slices=SLICES,
        rows=SIZE,
        cols=SIZE,
        seed=1,
        patient_id="BENCH-1",
        patient_name="BENCH^ONE",
    )
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix != ".npz"]

    cpu0, t0 = _cpu(), time.perf_counter()
    for p in files:
        pydicom.dcmread(p)
    pydicom_s = time.perf_counter() - t0
    pydicom_cpu = _cpu() - cpu0

    cpu0, t0 = _cpu(), time.perf_counter()
    report = ingest_path(folder, institution=inst, campaign_id=campaign.pk)
    ingest_s = time.perf_counter() - t0
    ingest_cpu = _cpu() - cpu0
    assert len(report.scans_created) == 1, report.as_dict()

    shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "slices": len(files),
                "ingest_s": round(ingest_s, 3),
                "pydicom_s": round(pydicom_s, 3),
                "slices_per_s": round(len(files) / ingest_s, 1),
                "pydicom_slices_per_s": round(len(files) / pydicom_s, 1),
                "ratio_to_pydicom": round(pydicom_s / ingest_s, 3),
                "ingest_cpu_ms_per_slice": round(1000 * ingest_cpu / len(files), 2),
                "pydicom_cpu_ms_per_slice": round(1000 * pydicom_cpu / len(files), 2),
                "cpu_ratio_to_pydicom": round(pydicom_cpu / ingest_cpu, 3),
            }
        )
    )


if __name__ == "__main__":
    main()

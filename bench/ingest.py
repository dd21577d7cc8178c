"""Ingest throughput: a 300-slice 512×512 phantom series through the service the API uses.

Prints JSON with slices_per_s (end to end: read, check, pseudonymise, store, volume cache)
and ratio_to_pydicom (against plain pydicom.dcmread of the same files in the same run).
"""

from __future__ import annotations

import json
import shutil
import time

import _django

SLICES, SIZE = 300, 512


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

    t0 = time.perf_counter()
    for p in files:
        pydicom.dcmread(p)
    pydicom_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = ingest_path(folder, institution=inst, campaign_id=campaign.pk)
    ingest_s = time.perf_counter() - t0
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
            }
        )
    )


if __name__ == "__main__":
    main()

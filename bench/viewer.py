"""Viewer load time: a 300 × 512² phantom scan opened in Debian's headless Chromium, served by
the same gunicorn command as `make run`, from navigation until every frame is in and drawn.

Prints JSON with load_s (median of three page loads; the first with cold server caches),
first_image_s (the first slice on screen, same load) and runs (every load's figures). Needs the
built frontend (make setup) and /usr/bin/chromium (make browsers).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _django

SLICES, SIZE, LOADS = 300, 512, 3
CHROMIUM = os.environ.get("CURATECT_CHROMIUM", "/usr/bin/chromium")
# The flags of tests/browser/conftest.py: WebGL2 through ANGLE over SwiftShader.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scan_to_open(work: Path) -> str:
    """The demo cast and one phantom scan batched to the annotator; the viewer's path."""
    from django.core.management import call_command

    from core.models import Campaign, User
    from core.services.batches import batch_build
    from imaging.ingest.service import ingest_path

    call_command("seed_demo", scans=0, no_batch=True, stdout=io.StringIO())
    campaign = Campaign.objects.get(slug="covid19")
    folder, _ = _django.phantom_series(
        work / "phantom",
        slices=SLICES,
        rows=SIZE,
        cols=SIZE,
        seed=11,
        patient_id="VIEW-1",
        patient_name="VIEW^ONE",
    )
    report = ingest_path(folder, institution=campaign.institution, campaign_id=campaign.pk)
    assert report.scans_created, report.as_dict()
    shutil.rmtree(folder.parent, ignore_errors=True)
    scan_id = report.scans_created[0]
    batch_build(
        actor=User.objects.get(username="manager"),
        campaign=campaign,
        scan_ids=[scan_id],
        annotator=User.objects.get(username="annotator"),
    )
    return f"/viewer/{campaign.pk}/{scan_id}/"


def start_web(port: int) -> subprocess.Popen:
    from django.conf import settings

    from platform_core.runner import web_command

    web = subprocess.Popen(
        web_command("127.0.0.1", port),
        cwd=settings.BASE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return web
        time.sleep(0.1)
    web.terminate()
    raise SystemExit("gunicorn did not start in 60 s")


def measure(base: str, path: str) -> list[dict]:
    from playwright.sync_api import sync_playwright

    runs = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        page.goto(f"{base}/login/")
        page.fill("#id_username", "annotator")
        page.fill("#id_password", os.environ.get("CURATECT_DEMO_PASSWORD", "curatect-demo"))
        page.click("button[type=submit]")
        page.wait_for_load_state()
        for _ in range(LOADS):
            started = time.perf_counter()
            page.goto(f"{base}{path}")
            page.wait_for_function(
                "() => window.curatect && (curatect.ready || curatect.error)", timeout=180_000
            )
            error = page.evaluate("curatect.error")
            if error:
                raise SystemExit(f"the viewer failed: {error}")
            figures = page.evaluate("({first: curatect.firstImageMs, loaded: curatect.loadTimeMs})")
            runs.append(
                {
                    "load_s": round(figures["loaded"] / 1000, 2),
                    "first_image_s": round(figures["first"] / 1000, 2),
                    "wall_s": round(time.perf_counter() - started, 2),
                }
            )
            log(f"load {len(runs)}: {runs[-1]}")
        browser.close()
    return runs


def main() -> None:
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium (make browsers)")
    work = _django.setup()
    path = scan_to_open(work)
    port = free_port()
    web = start_web(port)
    try:
        runs = measure(f"http://127.0.0.1:{port}", path)
    finally:
        os.killpg(web.pid, 15)
        web.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    median = sorted(runs, key=lambda r: r["load_s"])[len(runs) // 2]
    print(
        json.dumps(
            {
                "load_s": median["load_s"],
                "first_image_s": median["first_image_s"],
                "median_wall_s": statistics.median(r["wall_s"] for r in runs),
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()

"""Viewer speed a reader feels: a 500 × 512² phantom scan opened in Debian's headless Chromium
(software WebGL), served by the same gunicorn command as `make run`.

Prints JSON with load_s (median of three page loads, from navigation until every frame is in and
drawn; the first with cold server caches), first_image_s (the first slice on screen, same load),
runs (every load's figures), and, on the last load (issue #17 §6):
- slice_step_ms: p95 of 50 wheel steps, each from the wheel event to a rendered frame of the new
  slice (slice_step_p50_ms beside it);
- stroke_ms: a brush stroke (press, 10 moves, release) until its pixels were drawn;
- tool_switch_ms: the slowest of brush → eraser → grow (key press until the tool is on and a frame
  drawn) with a labelmap present (after the stroke), over three rounds (tool_switch_runs).
Goals under software rendering: tool_switch_ms ≤ 100, slice_step_ms ≤ 150, load_s ≤ 6.
CURATECT_BENCH_SLICES / CURATECT_BENCH_LOADS change the scan and the number of loads;
CURATECT_BENCH_QUERY adds the viewer's measuring knobs to its address (e.g. "?pixelRatio=1", the
canvas resolution without the software-WebGL reduction of viewer/cornerstone.ts);
CURATECT_BENCH_PROFILE=1 prints the wheel steps' hottest functions (a CPU profile). Needs the
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

SLICES = int(os.environ.get("CURATECT_BENCH_SLICES", "500"))
SIZE = 512
LOADS = int(os.environ.get("CURATECT_BENCH_LOADS", "3"))
WHEEL_STEPS = 50
# CURATECT_BENCH_QUERY="?pixelRatio=1": the viewer's measuring knobs (pixelRatio, chunk, parallel).
QUERY = os.environ.get("CURATECT_BENCH_QUERY", "")
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
            page.goto(f"{base}{path}{QUERY}")
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
        feel = interaction(page)
        log(f"interaction: {feel}")
        browser.close()
    return runs, feel


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


# A frame drawn after the given render count (curatect.renders counts drawn frames).
DRAWN_AFTER = "(r) => curatect.renders > r"


def top_self_time(profile: dict, n: int = 25) -> list[tuple[str, float]]:
    """The functions of a CPU profile (Profiler.stop) with the most self time, in ms."""
    nodes = {node["id"]: node for node in profile["nodes"]}
    spent: dict[str, float] = {}
    deltas = profile.get("timeDeltas", [])
    for sample, delta in zip(profile.get("samples", []), deltas, strict=True):
        frame = nodes[sample]["callFrame"]
        name = f"{frame['functionName'] or '(anonymous)'} {frame['url'].rsplit('/', 1)[-1]}:{frame['lineNumber']}"
        spent[name] = spent.get(name, 0.0) + delta / 1000
    return sorted(((k, round(v, 1)) for k, v in spent.items()), key=lambda kv: -kv[1])[:n]


def interaction(page) -> dict:
    """Wheel steps, a brush stroke and tool switches on the loaded scan, each to a drawn frame."""
    # CURATECT_BENCH_PROFILE=1: a CPU profile of the wheel steps, its top functions on stderr.
    cdp = None
    if os.environ.get("CURATECT_BENCH_PROFILE"):
        cdp = page.context.new_cdp_session(page)
        cdp.send("Profiler.enable")
        cdp.send("Profiler.start")
    box = page.locator("#view-axial").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    steps = []
    for i in range(WHEEL_STEPS):
        # Down then up half-way: the steps stay inside the scan wherever it opened.
        delta = 100 if i < WHEEL_STEPS // 2 else -100
        before = page.evaluate("[curatect.renders, curatect.sliceIndex()]")
        started = time.perf_counter()
        page.mouse.wheel(0, delta)
        page.wait_for_function(
            "([r, s]) => curatect.renders > r && curatect.sliceIndex() !== s", arg=before, polling="raf"
        )
        steps.append(since(started))
    if cdp is not None:
        for name, ms in top_self_time(cdp.send("Profiler.stop")["profile"]):
            log(f"{ms:9.1f} ms  {name}")

    page.keyboard.press("b")
    page.wait_for_function("() => curatect.tool() === 'brush'")
    rendered = page.evaluate("curatect.renders")
    started = time.perf_counter()
    page.mouse.down()
    for k in range(10):
        page.mouse.move(cx + 3 * k, cy + 2 * k)
    page.mouse.up()
    page.wait_for_function(DRAWN_AFTER, arg=rendered, polling="raf")
    stroke_ms = since(started)
    painted = page.evaluate("curatect.labelVoxelCount()")

    switches = []
    for _ in range(3):
        for key, tool in (("b", "brush"), ("e", "eraser"), ("g", "grow")):
            started = time.perf_counter()
            page.keyboard.press(key)
            page.wait_for_function(f"() => curatect.tool() === '{tool}'", polling="raf")
            page.evaluate("() => new Promise((done) => requestAnimationFrame(() => done()))")
            switches.append(since(started))
    return {
        "slice_step_ms": p95(steps),
        "slice_step_p50_ms": statistics.median(steps),
        "stroke_ms": stroke_ms,
        "stroke_voxels": painted,
        "tool_switch_ms": max(switches[1:]),  # the first press may still warm the tools up
        "tool_switch_first_ms": switches[0],
        "tool_switch_runs": switches,
    }


def main() -> None:
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium (make browsers)")
    work = _django.setup()
    path = scan_to_open(work)
    port = free_port()
    web = start_web(port)
    try:
        runs, feel = measure(f"http://127.0.0.1:{port}", path)
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
                "slices": SLICES,
                **feel,
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()

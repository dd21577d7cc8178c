"""Browser tests: Debian's headless chromium driven by Playwright against pytest-django's
live_server. Never a downloaded browser (no `playwright install`).

Flags from docs (NOTES-frontend): they give working WebGL2 (ANGLE over SwiftShader);
--disable-software-rasterizer must never be added, or Cornerstone falls back to CPU rendering.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command
from scipy import ndimage

# Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still
# synchronous, so Django's async-safety check would refuse them.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CURATECT_CHROMIUM", "/usr/bin/chromium")
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
DEMO_PASSWORD = os.environ.get("CURATECT_DEMO_PASSWORD", "curatect-demo")
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"
MANIFEST = Path(settings.BASE_DIR) / "frontend" / "dist" / ".vite" / "manifest.json"


@pytest.fixture(scope="session")
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (make browsers)")
    if not MANIFEST.exists():
        pytest.skip("the frontend is not built: cd frontend && npm ci && npm run build (make frontend)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


# Every page reports what its Content-Security-Policy blocked (the browser's own console line
# says "Refused to …"; the event also catches what a worker or a style attribute tried).
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.effectiveDirective} blocked ${e.blockedURI || "inline"} ` +
    `at ${e.sourceFile}:${e.lineNumber}`);
});
"""
CSP_CONSOLE = ("CSP violation:", "Content Security Policy", "Content-Security-Policy")


@pytest.fixture
def page(chromium, request):
    """A fresh browser context (own cookies and cache); its console is kept for failures.

    The pages run under the app's Content-Security-Policy: anything it blocks fails the test.
    """
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.console_lines = []
    page.on("console", lambda msg: page.console_lines.append(f"[{msg.type}] {msg.text}"))
    page.on("pageerror", lambda exc: page.console_lines.append(f"[pageerror] {exc}"))
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-failure.png"))
        (ARTIFACTS / f"{request.node.name}-console.log").write_text("\n".join(page.console_lines))
    context.close()
    violations = [line for line in page.console_lines if any(s in line for s in CSP_CONSOLE)]
    assert not violations, "the Content-Security-Policy blocked something:\n" + "\n".join(violations)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@dataclass
class PhantomScan:
    scan: object
    campaign: object
    lesions: np.ndarray  # ground truth (z, y, x), same z order as the scan's instances

    def deepest_lesion_voxel(self) -> tuple[int, int, int, int]:
        """(z, y, x, class) of the voxel deepest inside the largest lesion: a safe seed."""
        labels, _ = ndimage.label(self.lesions > 0)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        largest = labels == int(np.argmax(sizes))
        depth = ndimage.distance_transform_edt(largest)
        z, y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
        return int(z), int(y), int(x), int(self.lesions[z, y, x])


@pytest.fixture
def demo(transactional_db):
    """The demo institution, campaign and users (manage.py seed_demo), without scans."""
    from core.models import Campaign, User

    # curated=0: seed_demo's default curates 36 phantoms (~20-40 s), which no browser test reads.
    call_command("seed_demo", scans=0, no_batch=True, curated=0, stdout=io.StringIO())
    return {
        "campaign": Campaign.objects.get(slug="covid19"),
        "manager": User.objects.get(username="manager"),
        "annotator": User.objects.get(username="annotator"),
    }


@pytest.fixture
def phantom_scan(demo, tmp_path):
    """phantom_scan(slices=, size=, seed=) → a phantom scan imported through the real ingest
    and batched to the demo annotator, with its ground truth."""
    from core.services.batches import batch_build
    from demo.phantom import load_ground_truth, write_phantom_study
    from imaging.ingest.service import ingest_path

    def make(*, slices: int = 64, size: int = 256, seed: int = 3) -> PhantomScan:
        source = tmp_path / f"phantom-{seed}"
        folder = write_phantom_study(
            source,
            slices=slices,
            rows=size,
            cols=size,
            seed=seed,
            patient_id=f"BROWSER-{seed}",
            patient_name=f"BROWSER^{seed}",
        )
        truth = load_ground_truth(folder)
        (folder / "ground_truth.npz").unlink()  # not DICOM: keep the import report clean
        report = ingest_path(
            source, institution=demo["campaign"].institution, campaign_id=demo["campaign"].pk
        )
        assert report.scans_created and not report.rejected_series, report.as_dict()
        shutil.rmtree(source, ignore_errors=True)
        from core.models import Scan

        scan = Scan.objects.get(pk=report.scans_created[0])
        batch_build(
            actor=demo["manager"], campaign=demo["campaign"], scan_ids=[scan.pk], annotator=demo["annotator"]
        )
        return PhantomScan(scan=scan, campaign=demo["campaign"], lesions=truth.lesions)

    return make


def log_in(page, base_url: str, username: str = "annotator") -> None:
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


# Give wait_for_function a function ("() => …"): a bare expression is eval'ed inside the page,
# which the Content-Security-Policy forbids (no 'unsafe-eval').
def wait_viewer_ready(page, timeout_ms: int = 90_000) -> None:
    page.wait_for_function("() => window.curatect && (curatect.ready || curatect.error)", timeout=timeout_ms)
    error = page.evaluate("curatect.error")
    assert error is None, f"viewer failed: {error}\n" + "\n".join(page.console_lines[-20:])

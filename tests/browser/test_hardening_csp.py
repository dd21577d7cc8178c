"""The Content-Security-Policy in a real browser: pages carry it, and what it blocks is caught
(the page fixture fails any browser test whose pages trip it)."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.uid import JPEGLSLossless

from tests.browser.conftest import CSP_CONSOLE, log_in, wait_viewer_ready

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_injected_inline_script_is_blocked_and_reported(live_server, page, demo):
    response = page.goto(f"{live_server.url}/login/")
    assert "script-src 'self' 'nonce-" in response.headers["content-security-policy"]
    log_in(page, live_server.url, "manager")

    page.evaluate(
        """() => {
          const s = document.createElement("script");
          s.textContent = "window.injected = true";
          document.body.appendChild(s);
        }"""
    )
    page.wait_for_timeout(300)  # the violation event reaches the console asynchronously

    assert page.evaluate("window.injected === undefined")
    caught = [line for line in page.console_lines if any(s in line for s in CSP_CONSOLE)]
    assert caught, page.console_lines
    page.console_lines.clear()  # seen and expected: the fixture must not fail the test for it


def test_the_tokens_and_error_pages_run_clean_under_the_policy(live_server, page, demo):
    log_in(page, live_server.url, "manager")

    page.goto(f"{live_server.url}/tokens/")
    page.fill("#token-name", "browser test")
    page.click("button[type=submit].primary")
    key = page.input_value("#new-key")
    assert key.startswith("cct_")
    missing = page.goto(f"{live_server.url}/no-such-page/")
    assert missing.status == 404
    assert "Nothing here" in page.inner_text("main")


def test_a_compressed_series_decodes_under_the_policy(live_server, page, demo, tmp_path):
    # PACS send JPEG-LS and JPEG 2000; Cornerstone decodes them with WebAssembly codecs in its
    # workers. The page's policy has no 'wasm-unsafe-eval': this fails if decoding ever moves
    # to the page itself.
    from core.services.batches import batch_build
    from demo.phantom import write_phantom_study
    from imaging.ingest.service import ingest_path

    source = tmp_path / "jpeg-ls"
    folder = write_phantom_study(
        source, slices=48, rows=128, cols=128, seed=3, patient_id="JLS-1", patient_name="JLS^1"
    )
    (folder / "ground_truth.npz").unlink()
    for path in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls")
        ds.save_as(path)
    report = ingest_path(source, institution=demo["campaign"].institution, campaign_id=demo["campaign"].pk)
    (scan_id,) = report.scans_created
    batch_build(
        actor=demo["manager"], campaign=demo["campaign"], scan_ids=[scan_id], annotator=demo["annotator"]
    )

    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/viewer/{demo['campaign'].pk}/{scan_id}/")
    wait_viewer_ready(page)

    assert page.evaluate("curatect.error") is None

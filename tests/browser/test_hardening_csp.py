"""The Content-Security-Policy in a real browser: pages carry it, and what it blocks is caught
(the page fixture fails any browser test whose pages trip it)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import CSP_CONSOLE, log_in

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

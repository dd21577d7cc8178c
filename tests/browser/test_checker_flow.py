"""QC step 1 in the browser, on the check pages (no viewer needed): a checker opens a check from
the queue and fails it with a finding, the second checker passes it and only then sees the first
verdict, and the annotator reads the anonymised finding with a link to its slice."""

from __future__ import annotations

import pytest

from tests.browser.conftest import log_in
from tests.qc.conftest import make_batch, make_scans, open_checks, save, submit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def submitted_scan(demo):
    """A small scan (rows only: the check pages read no pixels) submitted by the demo annotator."""
    campaign = demo["campaign"]
    (scan,) = make_scans(campaign, 1)  # 8 slices of 32 × 32
    make_batch(campaign, demo["manager"], demo["annotator"], [scan])
    save(demo["annotator"], campaign, scan)
    submit(demo["annotator"], campaign, scan)
    return campaign, scan


def switch_user(page, base_url: str, username: str) -> None:
    page.context.clear_cookies()
    log_in(page, base_url, username)


def open_check_from_queue(page, base_url: str, check) -> None:
    page.goto(f"{base_url}/qc/checks/")
    page.wait_for_selector("#open-next")
    assert page.evaluate("document.activeElement.id") == "open-next"  # ready for the keyboard
    assert f"Scan {check.annotation.scan_id}" in page.inner_text("#check-queue")
    page.click(f"a.check-form-link[href='/qc/checks/{check.pk}/']")
    page.wait_for_url(f"**/qc/checks/{check.pk}/")
    page.wait_for_selector("form.verdict-form")


def test_two_checkers_decide_blind_and_the_annotator_reads_the_finding(live_server, page, submitted_scan):
    campaign, scan = submitted_scan
    base = live_server.url
    check_a, check_b = open_checks(campaign, scan)
    assert check_a.checker != check_b.checker

    # The first checker fails the revision with one finding.
    log_in(page, base, check_a.checker.username)
    open_check_from_queue(page, base, check_a)
    assert (
        page.get_attribute("#open-viewer", "href") == f"/viewer/{campaign.pk}/{scan.pk}/?check={check_a.pk}"
    )
    page.check("input[name=verdict][value=fail]")
    row = page.locator("li.finding-row").first  # choosing fail opens the first finding
    row.locator("select.finding-kind").select_option("boundary")
    row.locator(".finding-slice input").fill("5")  # slice 5 from the top of 8 = z 3
    row.locator(".finding-x input").fill("10")
    row.locator(".finding-y input").fill("12")
    row.locator("textarea").fill("edge too tight at the pleura")
    page.click("button.record-verdict")
    assert "send it back with 1 finding" in page.text_content(".confirm-box")  # asked once
    page.click(".confirm-yes")
    page.wait_for_selector("#verdict-recorded")
    assert (
        "Fail recorded — sent back with 1 finding once the other checker's verdict is in"
        in page.inner_text("#verdict-recorded")
    )
    assert "once both verdicts of this round are in" in page.inner_text("#verdicts")
    check_a.refresh_from_db()
    assert check_a.verdict == "fail"
    assert check_a.findings == [
        {"slice": 3, "position": [10, 12], "kind": "boundary", "text": "edge too tight at the pleura"}
    ]

    # A slice outside the scan is refused in the form, before anything is sent.
    switch_user(page, base, check_b.checker.username)
    open_check_from_queue(page, base, check_b)
    page.check("input[name=verdict][value=fail]")
    page.locator(".finding-slice input").first.fill("9")
    page.locator(".finding-x input").first.fill("1")
    page.locator(".finding-y input").first.fill("1")
    page.click("button.record-verdict")
    assert "slice must be a whole number from 1 to 8" in page.inner_text(".verdict-form .notice")
    check_b.refresh_from_db()
    assert check_b.verdict == "pending"

    # The second checker passes it, and only now sees the first checker's verdict.
    page.click("button.remove-finding")
    page.check("input[name=verdict][value=pass]")
    page.click("button.record-verdict")
    page.click(".confirm-yes")
    page.wait_for_selector("#verdict-recorded")
    assert "Pass recorded" in page.inner_text("#verdict-recorded")
    verdicts = page.inner_text("#verdicts")
    assert "The other verdict (checker A)" in verdicts
    assert "edge too tight at the pleura" in verdicts
    check_b.refresh_from_db()
    assert check_b.verdict == "pass"

    # The annotator sees the finding, anonymised, with a link to its slice in the viewer.
    switch_user(page, base, "annotator")
    page.goto(f"{base}/qc/findings/{campaign.pk}/{scan.pk}/")
    page.wait_for_selector("#findings[aria-busy=false] .review")
    text = page.inner_text("#findings")
    assert "checker A" in text and "checker B" in text
    assert "Boundary" in text and "slice 5, x 10, y 12" in text and "edge too tight at the pleura" in text
    assert check_a.checker.username not in text and check_b.checker.username not in text
    link = page.locator("#findings a", has_text="in the viewer").first
    assert link.get_attribute("href") == f"/viewer/{campaign.pk}/{scan.pk}/?slice=3"

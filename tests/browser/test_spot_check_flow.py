"""QC step 3 in the browser: after both checkers passed every scan of a batch, the senior opens
the drawn spot check from the queue, reads the checkers' rounds, and passes it."""

from __future__ import annotations

import pytest

from qc.models import SpotCheck, Verdict
from qc.services import check_record
from tests.browser.conftest import log_in
from tests.qc.conftest import make_batch, make_scans, open_checks, save, submit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_senior_reads_the_rounds_and_passes_the_spot_check(live_server, page, demo):
    campaign = demo["campaign"]
    (scan,) = make_scans(campaign, 1)
    make_batch(campaign, demo["manager"], demo["annotator"], [scan])
    save(demo["annotator"], campaign, scan)
    submit(demo["annotator"], campaign, scan)
    for check in open_checks(campaign, scan):
        check_record(actor=check.checker, check=check, verdict="pass", time_spent_s=30)
    spot = SpotCheck.objects.get(verdict=Verdict.PENDING)  # one scan: ceil(0.3 × 1) = 1 drawn

    log_in(page, live_server.url, spot.senior.username)
    page.goto(f"{live_server.url}/qc/spot-checks/")
    page.wait_for_selector("#open-next")
    assert page.evaluate("document.activeElement.id") == "open-next"
    assert f"Scan {scan.pk}" in page.inner_text("#spot-check-queue")
    page.keyboard.press("n")  # the queue's shortcut opens the next spot check
    page.wait_for_url(f"**/qc/spot-checks/{spot.pk}/")
    page.wait_for_selector("form.verdict-form")

    rounds = page.locator("section", has_text="The checkers' rounds")
    assert "Round 1" in rounds.inner_text()
    assert rounds.locator(".review").count() == 2  # both checkers' verdicts, anonymised
    page.check("input[name=verdict][value=pass]")
    page.click("button.record-verdict")
    assert "Pass: the annotation is right as it is" in page.text_content(".confirm-box")
    page.click(".confirm-yes")
    page.wait_for_selector("#verdict-recorded")

    notice = page.inner_text("#verdict-recorded")
    assert "Pass recorded." in notice and "No other spot check is waiting for you." in notice
    assert "Spot-check verdict" in page.inner_text("#spot-check")
    spot.refresh_from_db()
    assert spot.verdict == Verdict.PASS
    assert spot.review.state == "approved"

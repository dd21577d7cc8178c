"""Words and numbers on the pages, in the browser (issue #17 §3, §5): the export table shows the
download's size; a verdict on the checks page is asked once, and "Not yet" records nothing."""

from __future__ import annotations

import pytest

from tests.browser.conftest import log_in
from tests.browser.test_checker_flow import open_check_from_queue, submitted_scan  # noqa: F401
from tests.modelassist.curated import approve, import_scans, label_volume, run_export
from tests.qc.conftest import open_checks

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def size_words(n: int) -> str:
    """frontend/src/panels/dom.ts bytes(): decimal units, one decimal above bytes."""
    units, value, unit = ["B", "KB", "MB", "GB", "TB"], float(n), 0
    while value >= 1000 and unit < len(units) - 1:
        value, unit = value / 1000, unit + 1
    return f"{value:.1f} {units[unit]}" if unit else f"{n} B"


def test_the_export_table_shows_the_download_size(live_server, page, cast, tmp_path):
    cases = [(s, label_volume(t, s.shape)) for s, t in import_scans(cast, tmp_path, "alpha", 2, first_seed=0)]
    approve(cast, cases)
    export = run_export(cast)
    export.refresh_from_db()

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", cast.manager.username)
    page.fill("#id_password", "pw-" + cast.manager.username)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.goto(f"{live_server.url}/manage/models/")
    cell = page.locator("#exports table .download-size").first
    cell.wait_for()

    assert "Download size" in page.locator("#exports table thead th").all_inner_texts()
    assert cell.inner_text() == size_words(export.summary["archive_bytes"])
    assert cell.get_attribute("title") == size_words(export.summary["bytes"]) + " unpacked"


def test_a_verdict_on_the_checks_page_is_asked_once(live_server, page, submitted_scan):  # noqa: F811
    campaign, scan = submitted_scan
    check, _ = open_checks(campaign, scan)
    log_in(page, live_server.url, check.checker.username)
    open_check_from_queue(page, live_server.url, check)

    page.check("input[name=verdict][value=pass]")
    page.click("button.record-verdict")
    assert "Pass: the annotation is right as it is?" in page.text_content(".confirm-box")
    page.click(".confirm-no")  # "Not yet": nothing is sent
    check.refresh_from_db()
    assert check.verdict == "pending" and page.locator(".confirm-box").count() == 0

    page.click("button.record-verdict")
    page.click(".confirm-yes")
    page.wait_for_selector("#verdict-recorded")
    assert "Pass recorded" in page.inner_text("#verdict-recorded")
    check.refresh_from_db()
    assert check.verdict == "pass"

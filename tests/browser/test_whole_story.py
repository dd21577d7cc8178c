"""The whole story in the browser, through the pages only (issue #17 §7): the annotator labels a scan
and misses a lesion, two checkers check it blind (one fails with a finding), the annotator reads
the finding on its slice and revises, the same checkers recheck and pass, the senior's spot check
approves the batch, the data manager exports the curated labels and starts a retraining on them.

The fixtures only make the people, the campaign and one batch of one small phantom scan; every
step after that is a click on a page. The database is read to learn who was assigned and to
confirm what the pages said, never written.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tests.browser.conftest import log_in, wait_viewer_ready
from tests.browser.test_checker_flow import open_check_from_queue
from tests.browser.test_viewer import click_voxel
from tests.modelassist.curated import eager_celery
from tests.qc.conftest import open_checks

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def switch_user(page, base_url: str, username: str) -> None:
    page.context.clear_cookies()
    log_in(page, base_url, username)


def lesion_seeds(lesions: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(z, y, x, class) of the deepest voxel of each lesion, largest lesion first."""
    labels, _ = ndimage.label(lesions > 0)
    sizes = np.bincount(labels.ravel())[1:]
    seeds = []
    for index in np.argsort(-sizes):
        depth = ndimage.distance_transform_edt(labels == index + 1)
        z, y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
        seeds.append((int(z), int(y), int(x), int(lesions[z, y, x])))
    return seeds


def grow_at(page, seed: tuple[int, int, int, int]) -> None:
    z, y, x, lesion_class = seed
    before = page.evaluate("curatect.labelVoxelCount()")
    page.locator("#view-axial").hover()
    page.keyboard.press(str(lesion_class))
    page.keyboard.press("g")
    click_voxel(page, z, y, x)
    page.wait_for_function(f"() => curatect.labelVoxelCount() > {before}")


def save_and_submit(page) -> None:
    page.keyboard.press("Control+s")
    page.wait_for_function("() => curatect.saveStatus.startsWith('Saved')")
    page.click("#submit")
    page.click(".confirm-yes")
    page.wait_for_function(
        "() => curatect.saveStatus === 'Submitted for checking' || curatect.saveStatus.startsWith('Not')"
    )
    assert page.evaluate("curatect.saveStatus") == "Submitted for checking"


def record_verdict(page, verdict: str, confirm_words: str) -> str:
    page.check(f"input[name=verdict][value={verdict}]")
    page.click("button.record-verdict")
    assert confirm_words in page.text_content(".confirm-box")  # asked once
    page.click(".confirm-yes")
    page.wait_for_selector("#verdict-recorded")
    return page.inner_text("#verdict-recorded")


def test_the_whole_story_from_annotation_to_retraining(live_server, page, phantom_scan, demo):
    from annotation.models import Annotation
    from modelassist.models import DatasetExport, TrainingRun
    from qc.models import SpotCheck

    ph = phantom_scan(slices=32, size=128, seed=5)
    campaign, scan, n = ph.campaign, ph.scan, ph.scan.slices
    base = live_server.url
    missed, found = lesion_seeds(ph.lesions)[:2]

    # 1. The annotator: worklist → viewer, grows one lesion (and misses the largest), submits.
    log_in(page, base, "annotator")
    assert page.url.endswith("/worklist/")
    page.click(".next-unfinished")
    page.wait_for_url(f"**/viewer/{campaign.pk}/{scan.pk}/")
    wait_viewer_ready(page)
    assert "scan 1 of 1" in page.inner_text("#batch-position")
    grow_at(page, found)
    first_count = page.evaluate("curatect.labelVoxelCount()")
    page.select_option("#scan-label-diagnosis", "COVID-19")
    save_and_submit(page)
    page.goto(f"{base}/worklist/")
    page.wait_for_selector(".state-submitted")

    check_a, check_b = open_checks(campaign, scan)
    assert check_a.checker != check_b.checker
    assert "annotator" not in (check_a.checker.username, check_b.checker.username)
    mz, my, mx, _ = missed

    # 2. Checker A fails it with a finding at the missed lesion, and does not see B's verdict.
    switch_user(page, base, check_a.checker.username)
    open_check_from_queue(page, base, check_a)
    page.check("input[name=verdict][value=fail]")
    row = page.locator("li.finding-row").first
    row.locator("select.finding-kind").select_option("missed_lesion")
    row.locator(".finding-slice input").fill(str(n - mz))  # slices count from 1 at the head end
    row.locator(".finding-x input").fill(str(mx))
    row.locator(".finding-y input").fill(str(my))
    row.locator("textarea").fill("lesion not labelled")
    page.click("button.record-verdict")
    assert "send it back with 1 finding" in page.text_content(".confirm-box")
    page.click(".confirm-yes")
    page.wait_for_selector("#verdict-recorded")
    assert "once the other checker's verdict is in" in page.inner_text("#verdict-recorded")
    assert "the checks are blind" in page.inner_text("#verdicts")

    # 3. Checker B sees nothing of A's verdict until B has given one, then sees A's finding.
    switch_user(page, base, check_b.checker.username)
    open_check_from_queue(page, base, check_b)
    assert "lesion not labelled" not in page.inner_text("main")
    assert "Pass recorded" in record_verdict(page, "pass", "Pass: the annotation is right as it is")
    verdicts = page.inner_text("#verdicts")
    assert "The other verdict (checker A)" in verdicts and "lesion not labelled" in verdicts
    assert check_a.checker.username not in verdicts

    # 4. The annotator: "Findings" on the worklist, the anonymised finding on its slice.
    switch_user(page, base, "annotator")
    page.wait_for_selector("a.findings-link")
    assert "Needs revision" in page.inner_text(".state-needs_revision")
    page.click("a.findings-link")
    page.wait_for_selector("#findings[aria-busy=false] .review")
    text = page.inner_text("#findings")
    assert "checker A" in text and "checker B" in text and "lesion not labelled" in text
    assert f"slice {n - mz}, x {mx}, y {my}" in text
    assert check_a.checker.username not in text and check_b.checker.username not in text
    page.locator("#findings a", has_text="in the viewer").first.click()
    page.wait_for_url(f"**/viewer/{campaign.pk}/{scan.pk}/?slice={mz}")
    wait_viewer_ready(page)
    assert page.evaluate("curatect.annotationState()") == "needs_revision"
    assert page.evaluate("curatect.sliceIndex()") == mz  # the finding's slice
    page.wait_for_function("() => curatect.markers().length > 0", timeout=10_000)
    assert [m["slice"] for m in page.evaluate("curatect.markers()")] == [mz]
    assert "lesion not labelled" in page.inner_text("#findings-panel")
    assert page.evaluate("curatect.labelVoxelCount()") == first_count  # the submitted revision

    # 5. The revision: grow the missed lesion at the finding, save, submit again.
    grow_at(page, missed)
    save_and_submit(page)

    # 6. The same two checkers recheck the new revision, round 2; both pass.
    recheck_a, recheck_b = open_checks(campaign, scan)
    assert recheck_a.round == 2 and recheck_a.revision_id != check_a.revision_id
    assert {recheck_a.checker, recheck_b.checker} == {check_a.checker, check_b.checker}
    for check, other_seen in ((recheck_a, False), (recheck_b, True)):
        switch_user(page, base, check.checker.username)
        open_check_from_queue(page, base, check)
        assert "Round2" in page.inner_text("main").replace("\t", "").replace("\n", "")
        record_verdict(page, "pass", "Pass: the annotation is right as it is")
        assert ("The other verdict" in page.inner_text("#verdicts")) is other_seen

    # 7. The senior: the drawn spot check (1 scan: ceil(30 % of 1) = 1) shows both rounds; pass.
    spot = SpotCheck.objects.get(annotation__scan=scan)
    switch_user(page, base, spot.senior.username)
    page.goto(f"{base}/qc/spot-checks/")
    page.wait_for_selector("#open-next")
    assert f"Scan {scan.pk}" in page.inner_text("#spot-check-queue")
    page.keyboard.press("n")
    page.wait_for_url(f"**/qc/spot-checks/{spot.pk}/")
    page.wait_for_selector("form.verdict-form")
    rounds = page.locator("section", has_text="The checkers' rounds")
    assert "Round 1" in rounds.inner_text() and "Round 2" in rounds.inner_text()
    assert rounds.locator(".review").count() == 4
    assert check_a.checker.username not in rounds.inner_text()
    assert "Pass recorded." in record_verdict(page, "pass", "Pass: the annotation is right as it is")
    assert Annotation.objects.get(campaign=campaign, scan=scan).state == "curated"

    # The approved batch leaves the annotator's worklist (it lists open batches only).
    switch_user(page, base, "annotator")
    page.wait_for_selector("main .card")
    assert page.locator(".batch").count() == 0

    # 8. The data manager exports the curated labels. The export job runs in-process (eager
    # Celery): the test has no worker, and a page that waits on one would wait forever.
    switch_user(page, base, "manager")
    page.goto(f"{base}/manage/models/")
    page.wait_for_selector("#exports[aria-busy=false]")
    assert "No export yet." in page.inner_text("#exports")
    with eager_celery():
        page.click("#start-export")
        page.wait_for_selector("#exports table .download-size")
    export = DatasetExport.objects.get(campaign=campaign)
    assert export.status == "done" and export.version == 1
    assert "Export job" in page.inner_text("#export-notice")
    row = page.locator("#exports table tbody tr").first.inner_text()
    assert "v1" in row and "1 cases: 1 train" in row and "by patient" in row

    # 9. Retraining on export v1 starts: queued (no training worker here), and the page says so.
    page.wait_for_selector(f"#train-export option[value='{export.pk}']", state="attached")
    page.select_option("#train-export", str(export.pk))
    page.fill("#train-epochs", "1")
    page.fill("#train-classifier-epochs", "2")
    page.click("#train-submit")
    page.wait_for_function(
        "() => document.getElementById('train-notice').textContent.startsWith('Training run')"
    )
    run = TrainingRun.objects.get(campaign=campaign, export=export)
    assert page.inner_text("#train-notice") == f"Training run {run.id} is queued."
    page.wait_for_selector("#runs table")
    cells = page.locator("#runs table tbody tr").first.inner_text().split("\t")
    assert cells[:4] == [str(run.id), "Queued", "manual", "v1"]
    page.locator("#train-watch", has_text="waiting for the training worker").wait_for()  # its first poll
    assert (
        run.status == "queued" and run.params.get("epochs") == 1 and run.params.get("classifier_epochs") == 2
    )

"""The models page in the browser: each trained version's test figures against the number of
curated scans it learned from, as a chart with the same numbers as a table (#14 §4)."""

from __future__ import annotations

import pytest

from tests.modelassist.test_models_chart import curate, train

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _small_test_split(settings):
    settings.CURATECT_MIN_TEST_CASES = 1


def test_the_models_page_plots_test_figures_against_curated_scans(
    live_server, page, cast, tmp_path, monkeypatch
):
    from modelassist.services import training

    monkeypatch.setattr(training, "_send", lambda run_id: None)  # the test runs the jobs itself
    # Given two stages of curated data, five scans and then eight, each retrained on
    curate(cast, tmp_path, [("alpha", 2, 0), ("bravo", 1, 10), ("charlie", 1, 20), ("delta", 1, 30)])
    first = train(cast)
    curate(cast, tmp_path, [("alpha", 3, 40)])
    second = train(cast)

    # When the data manager opens the models page
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", cast.manager.username)
    page.fill("#id_password", "pw-" + cast.manager.username)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.goto(f"{live_server.url}/manage/models/")
    figure = page.locator("#model-stages figure")
    figure.wait_for()

    # Then a chart plots both versions against their curated scans, and its table says the same
    assert "against the number of curated scans" in figure.locator("figcaption").inner_text()
    box = figure.locator("canvas").bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100
    figure.locator("summary", has_text="Show the numbers").click()
    rows = figure.locator("tbody tr")
    assert rows.count() == 2
    cells = [rows.nth(i).inner_text().split("\t") for i in range(2)]
    assert cells[0][0] == f"{first.model_version.label}: 5 curated scans"
    assert cells[1][0] == f"{second.model_version.label}: 8 curated scans"
    assert cells[1][1] == f"{second.metrics['candidate']['mean']:.3f}"
    headers = figure.locator("thead th").all_inner_texts()
    assert headers[1:] == ["Test Dice (mean)", "Classifier micro-AUC"]

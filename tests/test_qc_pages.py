"""The QC and management pages (qc/pages.py, core/manage_pages.py, modelassist/pages.py):
each opens for the role it serves, sends anonymous visitors to the login, and answers 404 to
everyone else, exactly like the API behind it. No browser: the pages' data comes from the API,
tested elsewhere; here only who may open which page and what the page hands its script."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.conf import settings

from core.manage_pages import workflow_links
from core.templatetags import vite
from qc.models import SpotCheck
from tests.qc.conftest import decide, make_batch, make_scans, open_checks, save, submit

PAGES = [
    "/qc/checks/",
    "/qc/checks/1/",
    "/qc/spot-checks/",
    "/qc/spot-checks/1/",
    "/qc/findings/1/1/",
    "/qc/dashboard/",
    "/manage/batches/",
    "/manage/batches/1/",
    "/manage/import/",
    "/manage/models/",
    "/reports/1/1/",
]


@pytest.fixture(autouse=True)
def no_build(settings, tmp_path):
    """Render without a frontend build: the entry tag then names the entry it wanted."""
    settings.FRONTEND_DIST = tmp_path / "not-built"
    vite._cache["mtime"] = None
    yield
    vite._cache["mtime"] = None


@pytest.fixture
def submitted(cast):
    """One scan in a batch of the annotator, submitted: two checks are pending."""
    (scan,) = make_scans(cast.campaign, 1)
    batch = make_batch(cast.campaign, cast.manager, cast.annotator, [scan])
    save(cast.annotator, cast.campaign, scan)
    submit(cast.annotator, cast.campaign, scan)
    return batch, scan, open_checks(cast.campaign, scan)


def page_json(response, element_id: str):
    """The value a template put in the page with |json_script."""
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</script>', response.content.decode())
    return json.loads(found.group(1))


def opens(client, user, url: str) -> bool:
    client.force_login(user)
    response = client.get(url)
    assert response.status_code in (200, 404), (url, user.username, response.status_code)
    return response.status_code == 200


@pytest.mark.parametrize("url", PAGES)
def test_pages_send_anonymous_visitors_to_the_login(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_the_checker_queue_is_for_checkers(client, cast):
    response = (client.force_login(cast.checker1), client.get("/qc/checks/"))[1]

    assert response.status_code == 200
    assert b'id="check-queue"' in response.content
    assert b"src/pages/checks.ts" in response.content
    for other in (cast.annotator, cast.senior, cast.manager, cast.outsider):
        assert not opens(client, other, "/qc/checks/"), other.username


def test_a_check_page_opens_for_its_checker_and_links_the_viewer_in_check_mode(client, cast, submitted):
    _, scan, (check_a, _) = submitted
    client.force_login(check_a.checker)

    response = client.get(f"/qc/checks/{check_a.pk}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-check-id="{check_a.pk}"' in html
    assert f'data-viewer-url="/viewer/{cast.campaign.pk}/{scan.pk}/?check={check_a.pk}"' in html


def test_a_check_stays_hidden_from_the_other_checker_until_both_verdicts_are_in(client, cast, submitted):
    _, _, (check_a, check_b) = submitted
    url = f"/qc/checks/{check_a.pk}/"
    assert not opens(client, check_b.checker, url)

    decide(check_a, "pass")
    assert not opens(client, check_b.checker, url)
    decide(check_b, "fail")

    assert opens(client, check_b.checker, url)


def test_a_check_page_is_404_for_everyone_else(client, cast, submitted):
    _, _, (check_a, check_b) = submitted
    assigned = {check_a.checker_id, check_b.checker_id}
    bystander = next(c for c in (cast.checker1, cast.checker2, cast.checker3) if c.pk not in assigned)

    for user in (bystander, cast.annotator, cast.senior, cast.outsider):
        assert not opens(client, user, f"/qc/checks/{check_a.pk}/"), user.username
    assert not opens(client, check_a.checker, "/qc/checks/999999/")
    # The campaign's data manager may look (read only): the page says whose it is via the API.
    assert opens(client, cast.manager, f"/qc/checks/{check_a.pk}/")


def test_the_senior_queue_and_a_spot_check_page_are_for_the_senior(client, cast, submitted):
    _, _, checks = submitted
    for check in checks:
        decide(check, "pass")
    spot = SpotCheck.objects.get()
    url = f"/qc/spot-checks/{spot.pk}/"

    assert opens(client, cast.senior, "/qc/spot-checks/")
    client.force_login(cast.senior)
    assert b'data-mine="true"' in client.get(url).content
    for user in (cast.annotator, cast.checker1, cast.outsider):
        assert not opens(client, user, "/qc/spot-checks/"), user.username
        assert not opens(client, user, url), user.username


def test_findings_are_for_the_annotator_of_the_scan(client, cast, submitted):
    _, scan, checks = submitted
    url = f"/qc/findings/{cast.campaign.pk}/{scan.pk}/"

    assert opens(client, cast.annotator, url)
    client.force_login(cast.annotator)
    html = client.get(url).content.decode()
    assert f'data-viewer-url="/viewer/{cast.campaign.pk}/{scan.pk}/"' in html
    assert opens(client, cast.manager, url)
    for user in (cast.annotator2, checks[0].checker, cast.senior, cast.outsider):
        assert not opens(client, user, url), user.username
    assert not opens(client, cast.annotator, f"/qc/findings/{cast.campaign.pk}/999999/")


def test_the_dashboard_is_for_data_managers_and_seniors(client, cast):
    client.force_login(cast.manager)
    response = client.get("/qc/dashboard/")

    assert response.status_code == 200
    assert page_json(response, "dashboard-campaigns") == [
        {"id": cast.campaign.pk, "name": cast.campaign.name, "manager": True}
    ]
    client.force_login(cast.senior)
    assert b'"manager": false' in client.get("/qc/dashboard/").content
    for user in (cast.annotator, cast.checker1, cast.outsider):
        assert not opens(client, user, "/qc/dashboard/"), user.username


def test_the_batch_pages_are_for_the_campaigns_data_manager(client, cast, submitted):
    batch, _, _ = submitted
    client.force_login(cast.manager)
    response = client.get("/manage/batches/")

    assert response.status_code == 200
    data = page_json(response, "batch-campaigns")
    assert data[0]["id"] == cast.campaign.pk
    assert {a["username"] for a in data[0]["annotators"]} == {"annotator", "annotator2"}
    assert opens(client, cast.manager, f"/manage/batches/{batch.pk}/")
    for user in (cast.annotator, cast.checker1, cast.senior, cast.outsider):
        assert not opens(client, user, "/manage/batches/"), user.username
        assert not opens(client, user, f"/manage/batches/{batch.pk}/"), user.username


def test_the_import_page_offers_only_the_users_own_institutions(client, cast):
    client.force_login(cast.manager)
    html = client.get("/manage/import/").content.decode()
    assert 'value="demo"' in html and 'value="elsewhere"' not in html
    assert f'value="{cast.campaign.slug}"' in html

    client.force_login(cast.outsider)
    html = client.get("/manage/import/").content.decode()
    assert 'value="elsewhere"' in html and 'value="demo"' not in html
    assert f'value="{cast.campaign.slug}"' not in html
    for user in (cast.annotator, cast.checker1, cast.senior):
        assert not opens(client, user, "/manage/import/"), user.username


def test_the_models_page_is_for_data_managers(client, cast):
    assert opens(client, cast.manager, "/manage/models/")
    for user in (cast.annotator, cast.checker1, cast.senior, cast.outsider):
        assert not opens(client, user, "/manage/models/"), user.username


def test_a_report_opens_for_whoever_may_read_the_scan(client, cast, submitted):
    _, scan, checks = submitted
    url = f"/reports/{cast.campaign.pk}/{scan.pk}/"

    for user in (cast.manager, cast.annotator, checks[0].checker):
        assert opens(client, user, url), user.username
    for user in (cast.annotator2, cast.outsider):
        assert not opens(client, user, url), user.username
    (elsewhere,) = make_scans(cast.campaign, 1)
    elsewhere.campaign_scans.all().delete()  # a scan of the institution outside this campaign
    assert not opens(client, cast.manager, f"/reports/{cast.campaign.pk}/{elsewhere.pk}/")


def test_the_header_links_the_pages_of_each_role(client, cast):
    labels = {
        u.username: [link["label"] for link in workflow_links(u)]
        for u in (cast.annotator, cast.checker1, cast.senior, cast.manager)
    }

    assert labels["annotator"] == []
    assert labels["checker1"] == ["Checks"]
    assert labels["senior"] == ["Spot checks", "QC dashboard"]
    assert labels["manager"] == ["QC dashboard", "Batches", "Import", "Exports & models", "Federation"]
    client.force_login(cast.manager)
    html = client.get("/manage/batches/").content.decode()
    assert '<a href="/manage/batches/" aria-current="page">Batches</a>' in html
    assert '<a href="/manage/models/">Exports &amp; models</a>' in html


def test_every_page_entry_is_an_input_of_the_vite_build():
    config = (Path(settings.BASE_DIR) / "frontend" / "vite.config.ts").read_text()
    inputs = set(re.findall(r'"(src/pages/\w+\.ts)"', config))
    templates = [
        *Path(settings.BASE_DIR, "qc", "templates").rglob("*.html"),
        *Path(settings.BASE_DIR, "modelassist", "templates").rglob("*.html"),
        *Path(settings.BASE_DIR, "platform_core", "templates", "platform_core", "manage").rglob("*.html"),
    ]
    entries = {e for t in templates for e in re.findall(r'vite_entry "([^"]+)"', t.read_text())}

    assert entries and entries <= inputs
    for entry in entries:
        assert (Path(settings.BASE_DIR) / "frontend" / entry).exists(), entry

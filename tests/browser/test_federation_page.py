"""The site's federation page in the browser (#15 §3): a site's data manager joins a run by its
key with one of the site's curated exports (a wrong key says so), sees the run, its sites and
this site's outgoing log (what left, its size and sha256, the sample count, to which
coordinator), and leaves the run with a reason — all from the keyboard."""

from __future__ import annotations

import re

import pytest

from tests.federation.sites import make_site

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _small_test_split(settings):
    settings.CURATECT_MIN_TEST_CASES = 1


@pytest.fixture
def coordinator():
    """Another hospital that declares a run (its own institution, campaign and data manager)."""
    from core.label_schema import COVID19_SCHEMA
    from core.models import Campaign, CampaignMember, Institution, Membership, Role, User
    from federation.services.runs import federation_run_declare

    institution = Institution.objects.create(slug="coord", name="Coordinating Hospital")
    campaign = Campaign.objects.create(
        slug="covid-coord", name="COVID-19 federated", institution=institution, label_schema=COVID19_SCHEMA
    )
    manager = User.objects.create_user(username="coord-manager", password="pw")
    Membership.objects.create(user=manager, institution=institution, role=Role.DATA_MANAGER)
    CampaignMember.objects.create(campaign=campaign, user=manager, role=Role.DATA_MANAGER)
    return federation_run_declare(
        actor=manager,
        institution=institution,
        campaign=campaign,
        name="Three hospitals, spring",
        superlink_address="127.0.0.1:9091",
        architecture="unet2d-tiny",
        rounds=2,
    )


def _log_in(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_a_site_joins_a_run_sees_what_left_and_leaves(
    live_server, page, cast, settings, tmp_path, coordinator
):
    from core.models import AuditEvent
    from federation.models import FederationSite
    from federation.services.rounds import federation_round_sent

    # Given this site's curated export and a run another hospital declared
    site = make_site(settings, tmp_path / "sites", tmp_path / "sources", "alpha", seed=0, cast=cast)
    run = coordinator

    # When the site's data manager opens the federation page and joins with a wrong key
    _log_in(page, live_server.url, cast.manager.username, "pw-" + cast.manager.username)
    page.goto(f"{live_server.url}/manage/federation/")
    page.locator("#runs[aria-busy=false]").wait_for()
    assert "takes part in no federation run yet" in page.locator("#runs").inner_text()
    export_option = page.locator("#join-export option").first
    assert export_option.get_attribute("value") == str(site.export.pk)
    page.locator("#join-key").fill("00000000-0000-0000-0000-000000000000")
    page.locator("#join-key").press("Enter")
    notice = page.locator("#join-notice[role=alert]")
    notice.wait_for()
    # Then it says why, and nothing joined
    assert "no federation run has this key" in notice.inner_text()
    assert not FederationSite.objects.exists()

    # When they enter the right key (keyboard only: type, Tab to the options, Enter)
    page.locator("#join-key").fill(str(run.key))
    page.locator("#join-start").uncheck()
    page.locator("#join-key").press("Enter")
    page.locator("#join-notice[role=status]").wait_for()
    # Then the site joined with its export, and the run shows with this site in it
    joined = FederationSite.objects.get(run=run, institution=cast.institution)
    assert joined.export_id == site.export.pk and joined.status == "joined"
    card = page.locator(f"article.federation-run[data-run='{run.pk}']")
    card.wait_for()
    assert "Three hospitals, spring" in card.locator("h3").inner_text()
    assert "coord · 127.0.0.1:9091" in card.inner_text()
    sites_row = card.locator("table.federation-sites tbody tr")
    assert sites_row.count() == 1 and "(this site)" in sites_row.inner_text()
    assert "Joined" in sites_row.inner_text()
    assert "Nothing has left this site yet." in card.inner_text()

    # Given an update left the site in round 1 (the ClientApp's governance record)
    federation_round_sent(
        site=joined,
        number=1,
        sample_count=3,
        sent_bytes=123_456,
        sent_sha256="ab" * 32,
        sent_to=run.superlink_address,
        train_loss=0.4321,
        train_seconds=12.5,
    )
    # When the page is opened again, then its outgoing log says what left, how big, to whom
    page.reload()
    card.locator("table.federation-rounds").wait_for()
    row = card.locator("table.federation-rounds tbody tr")
    assert row.count() == 1
    cells = row.locator("td").all_inner_texts()
    assert cells[:5] == ["1", "3", "123.5 KB", "abababababab", "127.0.0.1:9091"]
    assert cells[6] == "0.4321"
    assert row.locator("code").first.get_attribute("title") == "ab" * 32

    # When the data manager gives a reason and leaves the run from the keyboard
    page.locator("#leave-reason").fill("our ethics board paused the study")
    leave = card.get_by_role("button", name=f"Leave run {run.pk}")
    leave.focus()
    page.keyboard.press("Enter")
    page.locator("#runs-notice[role=status]").wait_for()
    # Then the site left with its reason, in the page and in the audit trail
    joined.refresh_from_db()
    assert joined.status == "left" and joined.left_reason == "our ethics board paused the study"
    sites_row.filter(has_text="our ethics board").wait_for()  # the list, reloaded after the leave
    assert re.search(r"Left\s*our ethics board paused the study", sites_row.inner_text())
    assert AuditEvent.objects.filter(action="federation_site_leave", object_id=str(joined.pk)).exists()
    assert card.get_by_role("button", name=f"Leave run {run.pk}").count() == 0


def test_the_federation_page_is_for_data_managers_only(client, cast):
    client.force_login(cast.annotator)
    assert client.get("/manage/federation/").status_code == 404
    client.force_login(cast.manager)
    response = client.get("/manage/federation/")
    assert response.status_code == 200
    assert b"Join a run" in response.content

"""Browser pages (core/pages.py) and the Vite manifest tag, without a browser."""

from __future__ import annotations

import json

import pytest
from django.template import Context, Template

from core.services.batches import batch_build
from core.templatetags import vite


@pytest.fixture
def manifest(settings, tmp_path):
    """A Vite manifest like `npm run build` writes, in a throwaway dist folder."""
    settings.FRONTEND_DIST = tmp_path
    (tmp_path / ".vite").mkdir()
    (tmp_path / ".vite" / "manifest.json").write_text(
        json.dumps(
            {
                "_shared-abc.js": {"file": "assets/shared-abc.js", "css": ["assets/shared-abc.css"]},
                "src/pages/viewer.ts": {
                    "file": "assets/viewer-123.js",
                    "isEntry": True,
                    "imports": ["_shared-abc.js"],
                    "css": ["assets/viewer-123.css"],
                },
            }
        )
    )
    vite._cache["mtime"] = None
    yield tmp_path
    vite._cache["mtime"] = None


def test_vite_entry_emits_styles_preloads_and_the_module_script(manifest):
    html = Template('{% load vite %}{% vite_entry "src/pages/viewer.ts" %}').render(Context())

    assert '<link rel="stylesheet" href="/static/assets/shared-abc.css">' in html
    assert '<link rel="stylesheet" href="/static/assets/viewer-123.css">' in html
    assert '<link rel="modulepreload" href="/static/assets/shared-abc.js">' in html
    assert html.endswith('<script type="module" src="/static/assets/viewer-123.js"></script>')


def test_vite_entry_without_a_build_renders_a_hint_not_an_error(settings, tmp_path):
    settings.FRONTEND_DIST = tmp_path / "nothing-built"
    vite._cache["mtime"] = None

    html = Template('{% load vite %}{% vite_entry "src/pages/viewer.ts" %}').render(Context())

    assert "npm ci && npm run build" in html


def test_login_page_renders_and_logs_in(client, cast):
    assert client.get("/login/").status_code == 200

    response = client.post("/login/", {"username": "annotator", "password": "pw-annotator"})

    assert response.status_code == 302


def test_pages_need_a_login(client):
    for path in ["/", "/worklist/", "/viewer/1/1/"]:
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")


def test_home_sends_annotators_to_their_worklist_and_others_to_links(client, cast):
    client.force_login(cast.annotator)
    assert client.get("/")["Location"] == "/worklist/"

    client.force_login(cast.manager)
    response = client.get("/")
    assert response.status_code == 200
    assert b"/api/docs/" in response.content


def test_viewer_page_opens_for_the_assigned_annotator_only(client, cast, import_phantoms):
    (scan,) = import_phantoms(1, slices=12, size=32)
    batch_build(actor=cast.manager, campaign=cast.campaign, scan_ids=[scan.pk], annotator=cast.annotator)
    url = f"/viewer/{cast.campaign.pk}/{scan.pk}/"

    client.force_login(cast.annotator)
    response = client.get(url)
    assert response.status_code == 200
    assert f'data-series-uid="{scan.series_uid}"'.encode() in response.content

    for other in (cast.outsider, cast.annotator2):
        client.force_login(other)
        assert client.get(url).status_code == 404


def test_logout_is_a_post(client, cast):
    client.force_login(cast.annotator)

    response = client.post("/logout/")

    assert response.status_code == 302
    assert client.get("/worklist/").status_code == 302

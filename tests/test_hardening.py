"""Issue #12 item 5: what a hospital IT review expects of the running server.

DEBUG off by default (with a generated embedded secret key), the app's own error pages (JSON for
programs), login throttling on the form and on DICOMweb Basic auth, the Content-Security-Policy,
cookie lifetimes and no caching of patient data.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import include, path
from django.utils import timezone

from core.templatetags import vite

ROOT = Path(__file__).resolve().parent.parent


# --- A URLconf with views that fail, to reach the 403 and 500 handlers through real requests --


def _forbidden(request):
    raise PermissionDenied


def _boom(request):
    raise RuntimeError("a bug")


urlpatterns = [
    path("test-forbidden/", _forbidden),
    path("test-boom/", _boom),
    path("api/test-boom/", _boom),
    path("", include("platform_core.urls")),
]
handler400 = "platform_core.security.bad_request"
handler403 = "platform_core.security.permission_denied"
handler404 = "platform_core.security.page_not_found"
handler500 = "platform_core.security.server_error"


@pytest.fixture
def failing_urls(settings):
    settings.ROOT_URLCONF = __name__


# --- DEBUG and the secret key ------------------------------------------------------------------


def embedded_settings(data_dir: Path, **env_overrides: str) -> dict:
    """DEBUG, the secret key and its file's mode as a fresh `manage.py` process sees them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CURATECT_"))}
    env.update(CURATECT_DATA_DIR=str(data_dir), **env_overrides)
    code = (
        "import json; from django.conf import settings; "
        "print(json.dumps({'debug': settings.DEBUG, 'key': settings.SECRET_KEY}))"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_fresh_clone_runs_with_debug_off_and_a_private_generated_secret_key(tmp_path):
    first = embedded_settings(tmp_path)
    second = embedded_settings(tmp_path)

    assert first["debug"] is False
    assert len(first["key"]) >= 50 and "embedded-development-key" not in first["key"]
    assert second["key"] == first["key"]  # web server, worker and listener share one key
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert embedded_settings(tmp_path / "other")["key"] != first["key"]


def test_debug_is_there_when_the_environment_asks_for_it(tmp_path):
    assert embedded_settings(tmp_path, DJANGO_DEBUG="true")["debug"] is True


def test_production_settings_never_make_a_key_of_their_own(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CURATECT_"))}
    env.update(DJANGO_SETTINGS_MODULE="platform_core.settings_production", CURATECT_DATA_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr
    assert not (tmp_path / "secret_key").exists()


# --- Error pages -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_unknown_page_shows_the_apps_404_page_not_the_debug_page(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    html = response.content.decode()
    assert "Nothing here" in html and "CurateCT" in html
    assert "URLconf" not in html and "DEBUG" not in html


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/no-such-thing/", "/dicomweb/no-such-thing"])
def test_unknown_api_and_dicomweb_urls_answer_json(client, url):
    response = client.get(url)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db
def test_a_refusal_shows_the_apps_403_page(client, failing_urls):
    response = client.get("/test-forbidden/")

    assert response.status_code == 403
    assert "You may not do this" in response.content.decode()


@pytest.mark.django_db
def test_a_server_error_shows_the_apps_500_page_and_json_under_the_api(failing_urls):
    client = Client(raise_request_exception=False)

    page = client.get("/test-boom/")
    api = client.get("/api/test-boom/")

    assert page.status_code == 500
    assert "Something went wrong on our side" in page.content.decode()
    assert "RuntimeError" not in page.content.decode()
    assert api.status_code == 500
    assert api.json() == {"detail": "The server failed; the error was logged.", "code": "server_error"}


@pytest.mark.django_db
def test_a_form_sent_without_its_csrf_token_gets_the_expired_form_page():
    client = Client(enforce_csrf_checks=True)

    response = client.post("/login/", {"username": "annotator", "password": "x"})

    assert response.status_code == 403
    assert "This form has expired" in response.content.decode()


@pytest.mark.django_db
def test_static_files_of_the_vite_build_are_served_with_debug_off(client):
    manifest = vite.load_manifest()
    if "src/pages/base.ts" not in manifest:
        pytest.skip("the frontend is not built: make frontend")
    url = "/static/" + manifest["src/pages/base.ts"]["file"]

    response = client.get(url)

    b"".join(response.streaming_content)
    response.close()
    assert settings.DEBUG is False
    assert response.status_code == 200
    assert "immutable" in response["Cache-Control"]  # content-hashed names may be kept for good


# --- Content-Security-Policy -------------------------------------------------------------------


@pytest.fixture
def manifest(settings, tmp_path):
    settings.FRONTEND_DIST = tmp_path
    (tmp_path / ".vite").mkdir()
    (tmp_path / ".vite" / "manifest.json").write_text(
        json.dumps(
            {
                "_shared-abc.js": {"file": "assets/shared-abc.js"},
                "src/pages/base.ts": {
                    "file": "assets/base-123.js",
                    "isEntry": True,
                    "imports": ["_shared-abc.js"],
                },
            }
        )
    )
    vite._cache["mtime"] = None
    yield tmp_path
    vite._cache["mtime"] = None


def csp_directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


@pytest.mark.django_db
def test_pages_carry_a_csp_whose_nonce_is_on_the_vite_scripts_and_no_inline_script_runs(client, manifest):
    response = client.get("/login/")

    directives = csp_directives(response)
    script_src = directives["script-src"]
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    (nonce_source,) = [s for s in script_src if s.startswith("'nonce-")]
    nonce = nonce_source[len("'nonce-") : -1]
    assert len(base64.b64decode(nonce)) == 16
    html = response.content.decode()
    assert f'<script type="module" src="/static/assets/base-123.js" nonce="{nonce}"></script>' in html
    assert f'<link rel="modulepreload" href="/static/assets/shared-abc.js" nonce="{nonce}">' in html
    assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in directives["style-src"]


@pytest.mark.django_db
def test_each_request_gets_a_new_nonce(client, manifest):
    first = csp_directives(client.get("/login/"))["script-src"]
    second = csp_directives(client.get("/login/"))["script-src"]

    assert first != second


def test_no_template_has_an_inline_script_handler_or_style():
    # Under the policy they would not run (or not apply): code lives in the Vite bundle.
    offenders = []
    for template in ROOT.glob("*/**/templates/**/*.html"):
        if ".venv" in template.parts or "node_modules" in template.parts:
            continue
        text = template.read_text()
        for pattern in (r"<script(?![^>]*\bsrc=)[^>]*>", r"\son[a-z]+\s*=", r"\sstyle\s*=", r"<style\b"):
            offenders += [f"{template.relative_to(ROOT)}: {m}" for m in re.findall(pattern, text)]
    assert offenders == []


# --- Cookies and caching -----------------------------------------------------------------------


def test_the_csrf_cookie_lives_no_longer_than_the_session(client, cast):
    client.get("/login/")
    response = client.post("/login/", {"username": "annotator", "password": "pw-annotator"})

    assert response.status_code == 302
    csrf = response.cookies["csrftoken"]
    assert csrf["max-age"] == "" and csrf["expires"] == ""  # a browser-session cookie
    session = response.cookies["sessionid"]
    assert int(session["max-age"]) == settings.SESSION_COOKIE_AGE <= 24 * 3600
    assert session["httponly"]


def test_api_and_dicomweb_answers_are_never_stored_by_the_browser(client, cast):
    client.force_login(cast.manager)

    api = client.get("/api/me/")
    qido = client.get("/dicomweb/studies")
    refused = Client().get("/api/me/")

    assert api.status_code == 200 and api["Cache-Control"] == "no-store"
    assert qido.status_code in (200, 204) and qido["Cache-Control"] == "no-store"
    assert refused["Cache-Control"] == "no-store"


def test_wado_rs_pixel_data_is_no_store_too(client, cast, import_phantoms):
    from core.services.batches import batch_build

    # Its own seed: the per-process metadata cache is keyed by scan id and volume digest, and
    # test_dicomweb.py makes the same scan id from seed 0.
    (scan,) = import_phantoms(1, slices=12, size=32, first_seed=41)
    batch_build(actor=cast.manager, campaign=cast.campaign, scan_ids=[scan.pk], annotator=cast.annotator)
    client.force_login(cast.annotator)
    base = f"/dicomweb/studies/{scan.study.study_uid}/series/{scan.series_uid}"

    for url in (base + "/metadata", base + "/pixeldata?offset=0&count=2"):
        response = client.get(url)
        assert response.status_code == 200
        assert response["Cache-Control"] == "no-store"


# --- Login throttling (django-axes) ------------------------------------------------------------


def log_in(client: Client, username: str, password: str, address: str = "10.1.1.1"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_ten_wrong_passwords_lock_that_user_from_that_address_with_a_clear_message(client, cast):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = log_in(client, "annotator", "wrong")
        assert response.status_code == 200
        assert "correct username and password" in response.content.decode()

    tenth = log_in(client, "annotator", "wrong")
    right_password = log_in(client, "annotator", "pw-annotator")

    for response in (tenth, right_password):
        assert response.status_code == 429
        html = response.content.decode()
        assert "Too many wrong passwords for annotator from this computer" in html
        assert "locked for 15 minutes" in html
        assert int(response["Retry-After"]) == 15 * 60
    # The lock is for that pair only: the person at another workstation, and another user at
    # this one, still get in.
    assert log_in(Client(), "annotator", "pw-annotator", address="10.1.1.2").status_code == 302
    assert log_in(Client(), "checker1", "pw-checker1").status_code == 302


def test_the_lock_opens_after_the_cool_off(client, cast):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "annotator", "wrong")
    assert log_in(client, "annotator", "pw-annotator").status_code == 429

    AccessAttempt.objects.update(
        attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    )

    assert log_in(client, "annotator", "pw-annotator").status_code == 302


def test_a_successful_login_resets_the_count(client, cast):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "annotator", "wrong")
    assert log_in(client, "annotator", "pw-annotator").status_code == 302
    Client().get("/")  # a new person at the same computer

    assert log_in(Client(), "annotator", "wrong").status_code == 200  # counting from one again


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_dicomweb_basic_auth_is_throttled_the_same_way_and_answers_json_429(client, cast):
    def qido(password: str, address: str = "10.2.2.2"):
        return client.get(
            "/dicomweb/studies", HTTP_AUTHORIZATION=basic("manager", password), REMOTE_ADDR=address
        )

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = qido("wrong")
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Basic")

    tenth = qido("wrong")
    right_password = qido("pw-manager")

    for response in (tenth, right_password):
        assert response.status_code == 429
        body = response.json()
        assert body["code"] == "locked_out"
        assert "Too many wrong passwords for manager" in body["detail"]
        assert response["Retry-After"] == str(15 * 60)
    assert qido("pw-manager", address="10.2.2.3").status_code in (200, 204)

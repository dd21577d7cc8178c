"""API tokens (core/tokens): made on a page or the API, shown once, expiring, revocable,
and refused with the reason on every door that takes them (API, WADO-RS, QIDO/STOW-RS)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from core.models import AuditEvent
from core.tokens.models import ApiToken
from core.tokens.services import api_token_create

SERIES = "/dicomweb/studies/1.2.3/series/4.5.6"  # no such series: 404 once authenticated


def doors(key: str, scheme: str = "Token") -> dict[str, int]:
    """Status of one request through each door that accepts tokens, with nothing else sent."""
    auth = {"HTTP_AUTHORIZATION": f"{scheme} {key}"}
    client = Client()
    return {
        "api": client.get("/api/me/", **auth).status_code,
        "qido": client.get("/dicomweb/studies", **auth).status_code,
        "wado": client.get(SERIES + "/metadata", **auth).status_code,
    }


OPEN = {"api": 200, "qido": 200, "wado": 404}
# The API answers 403, not 401: DRF takes the challenge from its first scheme, the session.
SHUT = {"api": 403, "qido": 401, "wado": 401}


def make_on_page(client: Client, name: str = "Slicer on my laptop", days: int = 30) -> str:
    response = client.post("/tokens/", {"name": name, "expires_in_days": days})
    assert response.status_code == 200, response.content.decode()
    (key,) = re.findall(r'id="new-key"[^>]*value="([^"]+)"', response.content.decode())
    return key


def test_a_person_makes_a_token_on_the_page_and_sees_it_once(client, cast):
    client.force_login(cast.annotator)

    key = make_on_page(client)
    later = client.get("/tokens/").content.decode()

    assert key.startswith("cct_") and len(key) > 40
    assert key not in later  # only shown on the answer to the POST
    token = ApiToken.objects.get(user=cast.annotator)
    assert token.prefix in later and "Slicer on my laptop" in later
    assert key not in {token.digest, token.prefix, token.name}  # the key itself is not stored
    assert timedelta(days=29, hours=23) < token.expires_at - timezone.now() <= timedelta(days=30)


def test_the_answer_that_shows_the_key_is_never_cached(client, cast):
    client.force_login(cast.annotator)

    response = client.post("/tokens/", {"name": "script", "expires_in_days": 7})

    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("scheme", ["Token", "Bearer"])
def test_the_key_opens_the_api_and_dicomweb_as_its_owner(client, cast, scheme):
    client.force_login(cast.manager)
    key = make_on_page(client)

    assert doors(key, scheme) == OPEN
    me = Client().get("/api/me/", HTTP_AUTHORIZATION=f"{scheme} {key}")
    assert me.json()["username"] == "manager"
    assert ApiToken.objects.get().last_used_at is not None


def test_a_revoked_token_opens_nothing_and_says_so(client, cast):
    client.force_login(cast.manager)
    key = make_on_page(client)
    token = ApiToken.objects.get()

    response = client.post(f"/tokens/{token.pk}/revoke/", follow=True)

    assert "is revoked" in response.content.decode()
    assert doors(key) == SHUT and doors(key, "Bearer") == SHUT
    refused = Client().get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}")
    assert "revoked" in refused.json()["detail"]
    qido = Client().get("/dicomweb/studies", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert "revoked" in qido.json()["detail"]


def test_an_expired_token_opens_nothing_and_says_when_it_expired(cast):
    token, key = api_token_create(user=cast.manager, name="nightly export", expires_in_days=1)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    assert doors(key) == SHUT and doors(key, "Bearer") == SHUT
    refused = Client().get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}")
    assert "expired on" in refused.json()["detail"]


def test_create_and_revoke_are_audit_events(client, cast):
    client.force_login(cast.manager)
    make_on_page(client, name="OHIF")
    token = ApiToken.objects.get()
    client.post(f"/tokens/{token.pk}/revoke/")
    client.post(f"/tokens/{token.pk}/revoke/")  # twice: nothing more happens

    events = list(
        AuditEvent.objects.filter(object_type="apitoken").values_list("action", "from_state", "to_state")
    )

    assert events == [("api_token.create", "", "active"), ("api_token.revoke", "active", "revoked")]
    assert AuditEvent.objects.filter(object_type="apitoken", actor=cast.manager).count() == 2


def test_nobody_sees_or_revokes_another_persons_token(client, api, cast):
    theirs, key = api_token_create(user=cast.manager, name="manager's", expires_in_days=30)
    client.force_login(cast.annotator)
    api.force_login(cast.annotator)

    assert "manager&#x27;s" not in client.get("/tokens/").content.decode()
    assert client.post(f"/tokens/{theirs.pk}/revoke/").status_code == 404
    assert api.post(f"/api/tokens/{theirs.pk}/revoke/").status_code == 404
    assert api.get("/api/tokens/").json() == []
    assert doors(key) == OPEN


def test_the_api_makes_lists_and_revokes_own_tokens(api, cast):
    api.force_login(cast.checker1)

    made = api.post("/api/tokens/", {"name": "dicomweb-client", "expires_in_days": 7}, format="json")
    listed = api.get("/api/tokens/")

    assert made.status_code == 201
    key = made.json()["key"]
    assert doors(key) == OPEN
    (row,) = listed.json()
    assert row["status"] == "active" and row["prefix"] == key[:12]
    assert "key" not in row and "digest" not in row
    revoked = api.post(f"/api/tokens/{row['id']}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert doors(key) == SHUT


def test_a_token_cannot_make_tokens(cast):
    _token, key = api_token_create(user=cast.manager, name="script", expires_in_days=30)
    client = Client(HTTP_AUTHORIZATION=f"Token {key}")

    response = client.post("/api/tokens/", {"name": "a longer-lived one", "expires_in_days": 365})

    assert response.status_code in (401, 403)
    assert ApiToken.objects.count() == 1


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({"name": "  ", "expires_in_days": 30}, "Give the token a name"),
        ({"name": "x", "expires_in_days": 0}, "1 to 365 days"),
        ({"name": "x", "expires_in_days": 366}, "1 to 365 days"),
        ({"name": "x", "expires_in_days": "soon"}, "Choose how many days"),
    ],
)
def test_bad_input_on_the_page_answers_400_with_a_reason_and_makes_nothing(client, cast, form, reason):
    client.force_login(cast.annotator)

    response = client.post("/tokens/", form)

    assert response.status_code == 400
    assert reason in response.content.decode()
    assert not ApiToken.objects.exists()


def test_bad_input_on_the_api_answers_400_with_a_reason(api, cast):
    api.force_login(cast.annotator)

    response = api.post("/api/tokens/", {"name": "x", "expires_in_days": 9999}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "bad_expiry" and "1 to 365 days" in response.json()["detail"]


def test_the_longest_allowed_expiry_comes_from_the_settings(api, cast, settings):
    settings.CURATECT_API_TOKEN_MAX_DAYS = 30
    api.force_login(cast.annotator)

    assert api.post("/api/tokens/", {"name": "x", "expires_in_days": 31}, format="json").status_code == 400
    assert api.post("/api/tokens/", {"name": "x", "expires_in_days": 30}, format="json").status_code == 201


def test_keys_made_before_token_pages_still_work_until_they_are_too_old(cast):
    legacy = Token.objects.create(user=cast.manager)

    assert doors(legacy.key) == OPEN

    Token.objects.filter(pk=legacy.pk).update(created=timezone.now() - timedelta(days=366))

    assert doors(legacy.key) == SHUT
    refused = Client().get("/api/me/", HTTP_AUTHORIZATION=f"Token {legacy.key}")
    assert "expired on" in refused.json()["detail"]


def test_an_inactive_persons_token_opens_nothing(cast):
    _token, key = api_token_create(user=cast.manager, name="script", expires_in_days=30)
    cast.manager.is_active = False
    cast.manager.save()

    assert doors(key) == SHUT


def test_the_tokens_page_needs_a_login(client, db):
    response = client.get("/tokens/")

    assert response.status_code == 302 and response["Location"].startswith("/login/")

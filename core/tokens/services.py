"""Make, revoke and check API tokens. A key is shown once, at creation; only its digest is kept.

Keys are 32 random bytes, so a plain SHA-256 digest is enough to store them: a slow password
hash protects guessable secrets, and these cannot be guessed.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from core.api_errors import DomainError, NotFound
from core.models import User
from core.services.audit import audit_record
from core.tokens.models import ApiToken

KEY_PREFIX = "cct_"
# Expiry a person picks from on the page; the API takes any number of days up to the maximum.
EXPIRY_CHOICES_DAYS = (7, 30, 90, 365)
DEFAULT_EXPIRY_DAYS = 90
NAME_MAX = ApiToken._meta.get_field("name").max_length or 100
# last_used_at is bookkeeping, not an audit trail: a viewer sends hundreds of requests a minute,
# and one write per token per minute says as much as one per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenRejected(Exception):
    """The key does not authenticate anyone; the message says why, for the caller to act on."""


def max_expiry_days() -> int:
    return settings.CURATECT_API_TOKEN_MAX_DAYS


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _tokens_page() -> str:
    return reverse("api-tokens")


def _day(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


@transaction.atomic
def api_token_create(*, user: User, name: str, expires_in_days: int) -> tuple[ApiToken, str]:
    """A new token of `user` and its key (the only time the key exists outside the caller)."""
    name = (name or "").strip()
    if not name:
        raise DomainError(
            "Give the token a name that says what it is for, e.g. “Slicer on my laptop”.", code="bad_name"
        )
    if len(name) > NAME_MAX:
        raise DomainError(f"The name is longer than {NAME_MAX} characters.", code="bad_name")
    limit = max_expiry_days()
    if not 1 <= expires_in_days <= limit:
        raise DomainError(
            f"A token expires after 1 to {limit} days, not {expires_in_days}.",
            code="bad_expiry",
            max_days=limit,
        )
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=key[:12],
        digest=key_digest(key),
        expires_at=timezone.now() + timedelta(days=expires_in_days),
    )
    audit_record(
        actor=user,
        action="api_token.create",
        obj=token,
        to_state="active",
        name=name,
        prefix=token.prefix,
        expires_at=token.expires_at.isoformat(),
    )
    return token, key


@transaction.atomic
def api_token_revoke(*, user: User, token_id: int) -> ApiToken:
    """Switch off one of the user's own tokens; another person's token is not found (404)."""
    token = ApiToken.objects.select_for_update().filter(pk=token_id, user=user).first()
    if token is None:
        raise NotFound("You have no API token with this id.")
    if token.revoked_at is None:  # revoking twice changes nothing and records nothing
        old = token.status
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(
            actor=user,
            action="api_token.revoke",
            obj=token,
            from_state=old,
            to_state="revoked",
            name=token.name,
        )
    return token


def api_token_use(key: str) -> tuple[User, object]:
    """(user, token) for a key sent by a client, or TokenRejected saying why.

    Every door that takes tokens comes here (the API's `Token`, DICOMweb's `Token` and `Bearer`),
    so expiry and revocation hold everywhere.
    """
    token = ApiToken.objects.select_related("user").filter(digest=key_digest(key)).first()
    if token is None:
        return _legacy_token_use(key)
    now = timezone.now()
    if token.revoked_at is not None:
        raise TokenRejected(f"This API token was revoked; make a new one on {_tokens_page()}.")
    if token.expires_at <= now:
        raise TokenRejected(
            f"This API token expired on {_day(token.expires_at)}; make a new one on {_tokens_page()}."
        )
    if not token.user.is_active:
        raise TokenRejected("User inactive or deleted.")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user, token


def _legacy_token_use(key: str) -> tuple[User, object]:
    """Keys made with DRF's authtoken (the Django shell or admin, before token pages existed).

    Still accepted so scripts set up that way keep working, but they expire like the longest
    token one can make today, counted from their creation.
    """
    from rest_framework.authtoken.models import Token

    legacy = Token.objects.select_related("user").filter(key=key).first()
    if legacy is None:
        raise TokenRejected("Invalid token.")
    expires_at = legacy.created + timedelta(days=max_expiry_days())
    if expires_at <= timezone.now():
        raise TokenRejected(
            f"This API token (made in the shell or admin) expired on {_day(expires_at)}; make a new one "
            f"on {_tokens_page()}."
        )
    if not legacy.user.is_active:
        raise TokenRejected("User inactive or deleted.")
    return legacy.user, legacy

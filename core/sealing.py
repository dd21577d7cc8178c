"""Secrets sealed at rest: a PACS's password or bearer token is stored encrypted, never in clear.

Fernet (AES-128-CBC + HMAC-SHA256) under the keys of settings.CURATECT_SEALING_KEYS, held as a
MultiFernet so keys can be rotated: the first key seals, every key unseals. To rotate, put a new
key first and keep the old one after it until every secret has been entered (or sealed) again.

The keys come from the environment (CURATECT_SEALING_KEYS, comma-separated); development settings
derive one from SECRET_KEY when it is unset, production refuses to start without it.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core.api_errors import DomainError


class SealingKeyChanged(DomainError):
    """A sealed secret no key of CURATECT_SEALING_KEYS opens: it must be entered again."""

    code = "sealing_key_changed"


UNREADABLE = (
    "the stored password or token cannot be read: the sealing keys (CURATECT_SEALING_KEYS) changed "
    "since it was saved; enter the password or token again"
)


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("CURATECT_SEALING_KEYS holds no key")
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except ValueError as exc:  # never echo the key itself
        raise ImproperlyConfigured(
            "CURATECT_SEALING_KEYS must be comma-separated Fernet keys (32 url-safe base64-encoded bytes)"
        ) from exc


def _keys() -> tuple[str, ...]:
    return tuple(getattr(settings, "CURATECT_SEALING_KEYS", ()) or ())


def seal(text: str) -> str:
    """The text encrypted under the first sealing key (a new token each time)."""
    return _fernet(_keys()).encrypt(text.encode()).decode("ascii")


def unseal(token: str) -> str:
    """The text a token of seal() holds; SealingKeyChanged when no current key opens it."""
    try:
        return _fernet(_keys()).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError):
        raise SealingKeyChanged(UNREADABLE) from None

from __future__ import annotations

from django.db.models import QuerySet

from core.models import User
from core.tokens.models import ApiToken


def api_tokens_of(user: User) -> QuerySet[ApiToken]:
    """A person's own tokens, newest first; nobody lists another person's tokens."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")

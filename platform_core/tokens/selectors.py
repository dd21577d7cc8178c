from __future__ import annotations

from django.db.models import QuerySet

from platform_core.models import User
from platform_core.tokens.models import ApiToken


def api_tokens_of(user: User) -> QuerySet[ApiToken]:
    """A person's own tokens, newest first; nobody lists another person's tokens."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")

"""The API tokens page: make a token (its key shown once, on the answer to that POST), list, revoke."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from core.api_errors import DomainError, NotFound
from core.tokens import services
from core.tokens.selectors import api_tokens_of


def _page(request: HttpRequest, *, new_key: str = "", error: str = "", status: int = 200) -> HttpResponse:
    limit = services.max_expiry_days()
    context = {
        "tokens": api_tokens_of(request.user),
        "new_key": new_key,
        "error": error,
        "expiry_choices": [d for d in services.EXPIRY_CHOICES_DAYS if d <= limit] or [limit],
        "default_expiry": min(services.DEFAULT_EXPIRY_DAYS, limit),
        "name": request.POST.get("name", "") if error else "",
    }
    return render(request, "tokens/tokens.html", context, status=status)


@never_cache  # the answer to a create holds the key itself
@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _page(request)
    try:
        days = int(request.POST.get("expires_in_days", services.DEFAULT_EXPIRY_DAYS))
    except ValueError:
        return _page(request, error="Choose how many days the token lasts.", status=400)
    try:
        _token, key = services.api_token_create(
            user=request.user, name=request.POST.get("name", ""), expires_in_days=days
        )
    except DomainError as exc:
        return _page(request, error=exc.detail, status=400)
    # Rendered, not redirected: the key must not travel in a URL or sit in the session.
    return _page(request, new_key=key)


@login_required
@require_POST
def revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        token = services.api_token_revoke(user=request.user, token_id=token_id)
    except NotFound as exc:
        raise Http404(exc.detail) from exc
    messages.success(
        request, f"The token “{token.name}” ({token.prefix}…) is revoked: it opens nothing any more."
    )
    return redirect("api-tokens")

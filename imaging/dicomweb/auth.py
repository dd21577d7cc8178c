"""Who is calling the DICOMweb server: the API's session or token, plus what standard clients send.

Accepted: the browser session (with CSRF on writes), `Authorization: Token <key>` (an API token
from the tokens page), `Authorization: Bearer <key>` (the same key, as OHIF, Slicer and
dicomweb-client send tokens), and HTTP Basic with the user's password (for clients that only
know that). Expired and revoked tokens are refused with the reason (core.tokens).

Basic auth counts wrong passwords like the login form (django-axes: BasicAuthentication passes
the request to `authenticate`); once a username is locked out from an address, AxesMiddleware
turns the answer into a JSON 429 with Retry-After (platform_core.security.lockout_response).

CSRF with Basic/Bearer: a browser may attach cached Basic credentials to a cross-site request,
but the only write here (STOW-RS) requires `Content-Type: multipart/related`, which no form can
send and a cross-site script cannot send without a CORS preflight that this server never grants.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from rest_framework.authentication import BasicAuthentication
from rest_framework.exceptions import AuthenticationFailed

from core.models import User
from core.tokens.auth import ApiTokenAuthentication, BearerApiTokenAuthentication

REALM = "CurateCT DICOMweb"


class NotAuthenticated(Exception):
    status = 401
    code = "not_authenticated"


class CsrfFailed(NotAuthenticated):
    status = 403
    code = "csrf_failed"


def _csrf_ok(request: HttpRequest) -> bool:
    check = CsrfViewMiddleware(lambda r: HttpResponse())
    check.process_request(request)
    return check.process_view(request, None, (), {}) is None


def dicomweb_user(request: HttpRequest) -> User:
    """The calling user, or NotAuthenticated. Explicit credentials win over the session."""
    if request.META.get("HTTP_AUTHORIZATION"):
        for scheme in (ApiTokenAuthentication, BearerApiTokenAuthentication, BasicAuthentication):
            try:
                result = scheme().authenticate(request)  # type: ignore[arg-type]
            except AuthenticationFailed as exc:
                raise NotAuthenticated(str(exc.detail)) from exc
            if result is not None:
                return result[0]
        raise NotAuthenticated("unsupported Authorization scheme; use Token, Bearer or Basic")
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        if request.method not in ("GET", "HEAD", "OPTIONS") and not _csrf_ok(request):
            raise CsrfFailed("CSRF check failed for a session request; send the X-CSRFToken header")
        return user
    raise NotAuthenticated("log in, or send credentials (Token, Bearer or Basic)")


def error(status: int, detail: str, code: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"detail": detail, "code": code}, status=status)
    for key, value in headers.items():
        response[key.replace("_", "-")] = value
    if status == 401:
        response["WWW-Authenticate"] = f'Basic realm="{REALM}"'
    return response


def dicomweb_endpoint(methods: tuple[str, ...]) -> Callable:
    """Authenticate (401 with a Basic challenge otherwise) and restrict the HTTP methods."""

    def decorator(view: Callable) -> Callable:
        @csrf_exempt  # session writes are CSRF-checked in dicomweb_user
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            allowed = {*methods, "HEAD"} if "GET" in methods else set(methods)
            if request.method not in allowed:
                response = error(405, f"{request.method} is not allowed here", "method_not_allowed")
                response["Allow"] = ", ".join(sorted(allowed))
                return response
            try:
                user = dicomweb_user(request)
            except NotAuthenticated as exc:
                return error(exc.status, str(exc), exc.code)
            return view(request, user, *args, **kwargs)

        return wrapper

    return decorator

"""Answers a hospital IT review asks for: error pages, login lockouts, no caching of patient data.

- Error pages: the app's own 400/403/404/500 pages (templates/400.html …), and JSON with a
  reason under /api/ and /dicomweb/, where the callers are scripts and viewers, not people.
- Login lockout (django-axes calls `lockout_response`): the login page with a message that says
  how long, or a JSON 429 with Retry-After for DICOMweb Basic auth and the API.
- `Cache-Control: no-store` on every /api/ and /dicomweb/ answer (NoStoreApiMiddleware).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from axes.helpers import get_client_username, get_cool_off
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template import loader
from django.utils import timezone
from django.views.decorators.csrf import requires_csrf_token

# Prefixes whose callers are programs: they get JSON, never an HTML page.
MACHINE_PREFIXES = ("/api/", "/dicomweb/")


def for_machines(request: HttpRequest) -> bool:
    return request.path.startswith(MACHINE_PREFIXES)


def _json_error(status: int, detail: str, code: str) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code}, status=status)


# --- Error pages (handler400/403/404/500 in platform_core/urls.py) -------------------------


@requires_csrf_token
def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if for_machines(request):
        return _json_error(400, "The request could not be understood.", "bad_request")
    return render(request, "400.html", status=400)


@requires_csrf_token
def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if for_machines(request):
        return _json_error(403, "You may not do this.", "forbidden")
    return render(request, "403.html", status=403)


@requires_csrf_token
def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if for_machines(request):
        return _json_error(404, f"Nothing is at {request.path[:200]}.", "not_found")
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if for_machines(request):
        return _json_error(500, "The server failed; the error was logged.", "server_error")
    # No request context: whatever broke (the database, a context processor) must not break this.
    return HttpResponse(loader.get_template("500.html").render(), status=500)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if for_machines(request):
        return _json_error(403, f"CSRF check failed: {reason}", "csrf_failed")
    return render(request, "403_csrf.html", status=403)


# --- Login lockout (settings.AXES_LOCKOUT_CALLABLE) -----------------------------------------


def _minutes(delta: timedelta) -> str:
    minutes = max(1, round(delta.total_seconds() / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def lockout_message(request: HttpRequest, credentials: dict | None) -> str:
    cool_off = get_cool_off(request) or timedelta(0)
    until = timezone.localtime(timezone.now() + cool_off).strftime("%H:%M")
    username = get_client_username(request, credentials) or "this user"
    return (
        f"Too many wrong passwords for {username} from this computer: logging in is locked for "
        f"{_minutes(cool_off)} (until {until} {timezone.get_current_timezone_name()}). Wait and try "
        "again, or ask an administrator to unlock it sooner."
    )


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    message = lockout_message(request, credentials)
    cool_off = get_cool_off(request) or timedelta(0)
    if for_machines(request):
        response: HttpResponse = _json_error(429, message, "locked_out")
    else:
        from django.contrib.auth.forms import AuthenticationForm

        context = {"form": AuthenticationForm(request), "locked_out": message}
        response = render(request, "core/login.html", context, status=429)
    response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response


# --- Caching --------------------------------------------------------------------------------


class NoStoreApiMiddleware:
    """`Cache-Control: no-store` on every API and DICOMweb answer.

    They carry patient-derived data (pseudonymised pixels, labels, reports). `private` would keep
    them out of shared caches, but the browser's own disk cache on a shared ward workstation
    outlives the session and the next person's login; the viewer keeps what it loaded in memory,
    so no-store costs a re-download only when a scan is opened again.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if for_machines(request):
            response["Cache-Control"] = "no-store"
        return response

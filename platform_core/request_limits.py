"""Request-size limits that answer JSON 413 instead of Django's HTML 400 page.

Django only notices an oversized body when a view reads it (RequestDataTooBig, which it
turns into an HTML "Bad Request"); by then a worker may have spooled the whole upload. A
declared Content-Length over the limit is refused here, before anything is read.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse


def body_limit(request: HttpRequest) -> int:
    """Bytes a request body may have: multipart bodies carry files (DICOM uploads, STOW-RS,
    model weights) and get the upload limit; everything else the in-memory data limit."""
    if request.META.get("CONTENT_TYPE", "").lower().startswith("multipart/"):
        return settings.INGEST_MAX_UPLOAD_BYTES
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def too_large(limit: int) -> JsonResponse:
    return JsonResponse(
        {
            "detail": f"the request body exceeds the limit of {limit:,} bytes; "
            "send less at once (split labels into boxes, or import large studies in parts)",
            "code": "too_large",
            "limit": limit,
        },
        status=413,
    )


class RequestSizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        limit = body_limit(request)
        if not raw.isdigit():
            # A WSGI server would normally refuse this; Django reads it as an empty body.
            return JsonResponse(
                {"detail": "Content-Length must be a number of bytes", "code": "bad_content_length"},
                status=400,
            )
        # len() first: int() of thousands of digits raises instead of comparing.
        if len(raw) > 20 or int(raw) > limit:
            return too_large(limit)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RequestDataTooBig):
            return too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        return None

"""One error shape for the API: {"detail": "...", "code": "..."} plus any extra context."""

from __future__ import annotations

import re
from typing import Any

from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response


class DomainError(Exception):
    """Raised by services: a rule a person broke, with a reason they can act on."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.extra = extra


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class Forbidden(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "forbidden"


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class PreconditionRequired(DomainError):
    status_code = 428
    code = "precondition_required"


# ASCII digits only (str.isdigit() accepts "²"), and few enough that int() is cheap and the id
# fits a 64-bit column.
_ID_RE = re.compile(r"[0-9]{1,18}")


def id_param(raw: str, name: str) -> int:
    """A query parameter that names an object by id; 400 with the reason when it cannot."""
    if not _ID_RE.fullmatch(raw):
        raise DomainError(f"{name} must be an id (a whole number), not {raw[:40]!r}", code=f"bad_{name}")
    return int(raw)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    # Imported here: rest_framework.views loads the authentication classes, and those (ours)
    # import this module for DomainError; a top-level import would make that a cycle.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, DomainError):
        return Response({"detail": exc.detail, "code": exc.code, **exc.extra}, status=exc.status_code)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, APIException) and isinstance(response.data, dict):
        response.data.setdefault("code", getattr(exc, "default_code", "error"))
    return response

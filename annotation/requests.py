"""What a request says about the revision it acts on (If-Match ETag or a body field): one reader
for saves, submits and verdicts."""

from __future__ import annotations

import re

from rest_framework.request import Request

from core.api_errors import DomainError, PreconditionRequired

# At most 18 digits: any revision id fits, and int() of thousands of digits raises instead.
ETAG_RE = re.compile(r'^(?:W/)?"rev-(\d{1,18})"$')


def revision_id_from(request: Request, body: dict, field: str, missing: str) -> int | None:
    """The revision a request acts on: the If-Match ETag, else body[field]; 428 when neither."""
    if_match = request.headers.get("If-Match")
    if if_match:
        m = ETAG_RE.match(if_match.strip())
        if not m:
            raise DomainError('If-Match must be an ETag like "rev-12"', code="bad_if_match")
        return int(m.group(1))
    if field not in body:
        raise PreconditionRequired(missing)
    return body[field]

"""DRF authentication classes for API tokens: `Authorization: Token <key>` and `Bearer <key>`.

Both check the key with tokens.services.api_token_use, so an expired or revoked key is refused
with the reason on every door (the API, WADO-RS, QIDO/STOW-RS).
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from core.tokens.services import TokenRejected, api_token_use


class ApiTokenAuthentication(TokenAuthentication):
    keyword = "Token"

    def authenticate_credentials(self, key: str):  # type: ignore[override]
        try:
            return api_token_use(key)
        except TokenRejected as exc:
            raise AuthenticationFailed(str(exc)) from exc


class BearerApiTokenAuthentication(ApiTokenAuthentication):
    """The same keys as OHIF, 3D Slicer and dicomweb-client send them."""

    keyword = "Bearer"


class BearerScheme(OpenApiAuthenticationExtension):
    """In the OpenAPI schema: `Bearer` is its own scheme (drf-spectacular would name it tokenAuth
    like `Token`, and two schemes of one name are a schema warning)."""

    target_class = "core.tokens.auth.BearerApiTokenAuthentication"
    name = "bearerAuth"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}

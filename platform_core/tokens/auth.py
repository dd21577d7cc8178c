"""DRF authentication classes for API tokens: `Authorization: Token <key>` and `Bearer <key>`.

Both check the key with tokens.services.api_token_use, so an expired or revoked key is refused
with the reason on every door (the API, WADO-RS, QIDO/STOW-RS).
"""

from __future__ import annotations

from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from platform_core.tokens.services import TokenRejected, api_token_use


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

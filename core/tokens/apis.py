"""JSON API of a person's own API tokens: list, create (the key is in that answer only), revoke.

Session authentication only: a token must not mint tokens, or one leaked key could renew itself
past its expiry for ever.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.tokens import services
from core.tokens.selectors import api_tokens_of


class ApiTokenOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="the key's first characters, to tell keys apart")
    status = serializers.ChoiceField(choices=["active", "expired", "revoked"])
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="to the minute")
    revoked_at = serializers.DateTimeField(allow_null=True)


class ApiTokenCreatedOut(ApiTokenOut):
    key = serializers.CharField(help_text="shown this once; only a digest is stored")


class ApiTokenIn(serializers.Serializer):
    name = serializers.CharField(max_length=services.NAME_MAX)
    expires_in_days = serializers.IntegerField(
        default=services.DEFAULT_EXPIRY_DAYS, min_value=1, help_text="at most CURATECT_API_TOKEN_MAX_DAYS"
    )


class _OwnTokensApi(APIView):
    authentication_classes = [SessionAuthentication]


class ApiTokenListCreateApi(_OwnTokensApi):
    @extend_schema(responses=ApiTokenOut(many=True), operation_id="api_tokens_list")
    def get(self, request: Request) -> Response:
        return Response(ApiTokenOut(api_tokens_of(request.user), many=True).data)

    @extend_schema(request=ApiTokenIn, responses={201: ApiTokenCreatedOut}, operation_id="api_token_create")
    def post(self, request: Request) -> Response:
        data = ApiTokenIn(data=request.data)
        data.is_valid(raise_exception=True)
        token, key = services.api_token_create(user=request.user, **data.validated_data)
        body = {**ApiTokenOut(token).data, "key": key}
        return Response(body, status=status.HTTP_201_CREATED)


class ApiTokenRevokeApi(_OwnTokensApi):
    @extend_schema(request=None, responses=ApiTokenOut, operation_id="api_token_revoke")
    def post(self, request: Request, token_id: int) -> Response:
        token = services.api_token_revoke(user=request.user, token_id=token_id)
        return Response(ApiTokenOut(token).data)

from django.urls import path

from core.tokens import apis

urlpatterns = [
    path("tokens/", apis.ApiTokenListCreateApi.as_view(), name="api-tokens-list"),
    path("tokens/<int:token_id>/revoke/", apis.ApiTokenRevokeApi.as_view(), name="api-token-revoke"),
]

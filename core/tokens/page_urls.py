from django.urls import path

from core.tokens import pages

urlpatterns = [
    path("tokens/", pages.tokens, name="api-tokens"),
    path("tokens/<int:token_id>/revoke/", pages.revoke, name="api-token-revoke-page"),
]

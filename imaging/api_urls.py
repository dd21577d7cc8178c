"""Imaging API (the root urls.py includes these at "api/")."""

from django.urls import path

from imaging import apis

urlpatterns = [
    path("imports/", apis.ImportCreateApi.as_view(), name="api-imports"),
    path("imports/<int:job_id>/", apis.ImportDetailApi.as_view(), name="api-import"),
    path("imports/<int:job_id>/cancel/", apis.ImportCancelApi.as_view(), name="api-import-cancel"),
]

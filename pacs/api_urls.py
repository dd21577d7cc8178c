"""PACS API (the root urls.py includes these at "api/pacs/")."""

from django.urls import path

from pacs import apis

urlpatterns = [
    path("remotes/", apis.RemoteListApi.as_view(), name="api-pacs-remotes"),
    path("remotes/<int:remote_id>/", apis.RemoteDetailApi.as_view(), name="api-pacs-remote"),
    path("remotes/<int:remote_id>/echo/", apis.RemoteEchoApi.as_view(), name="api-pacs-remote-echo"),
    path(
        "remotes/<int:remote_id>/studies/",
        apis.RemoteStudySearchApi.as_view(),
        name="api-pacs-remote-studies",
    ),
    path(
        "remotes/<int:remote_id>/studies/<str:study_uid>/series/",
        apis.RemoteSeriesSearchApi.as_view(),
        name="api-pacs-remote-series",
    ),
    path("remotes/<int:remote_id>/pull/", apis.RemotePullApi.as_view(), name="api-pacs-remote-pull"),
    path("scans/<int:scan_id>/send/", apis.ScanSendApi.as_view(), name="api-pacs-scan-send"),
    path("sends/", apis.SendListApi.as_view(), name="api-pacs-sends"),
    path("sends/<int:send_id>/", apis.SendDetailApi.as_view(), name="api-pacs-send"),
    path("imports/", apis.ImportListApi.as_view(), name="api-pacs-imports"),
    path(
        "institutions/<int:institution_id>/ae-titles/",
        apis.InstitutionAeTitlesApi.as_view(),
        name="api-pacs-ae-titles",
    ),
]

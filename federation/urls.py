from django.urls import path

from federation import apis

urlpatterns = [
    path("federation/runs/", apis.RunListApi.as_view(), name="federation-runs"),
    path("federation/runs/<int:run_id>/", apis.RunDetailApi.as_view(), name="federation-run"),
    path("federation/runs/<int:run_id>/start/", apis.RunStartApi.as_view(), name="federation-run-start"),
    path("federation/runs/<int:run_id>/cancel/", apis.RunCancelApi.as_view(), name="federation-run-cancel"),
    path(
        "federation/runs/<int:run_id>/invitation/",
        apis.RunInvitationApi.as_view(),
        name="federation-run-invitation",
    ),
    path("federation/invitations/", apis.InvitationImportApi.as_view(), name="federation-invitation-import"),
    path("federation/sites/", apis.SiteJoinApi.as_view(), name="federation-site-join"),
    path("federation/sites/<int:site_id>/", apis.SiteDetailApi.as_view(), name="federation-site"),
    path("federation/sites/<int:site_id>/start/", apis.SiteStartApi.as_view(), name="federation-site-start"),
    path("federation/sites/<int:site_id>/leave/", apis.SiteLeaveApi.as_view(), name="federation-site-leave"),
    path(
        "federation/sites/<int:site_id>/rounds/", apis.SiteRoundsApi.as_view(), name="federation-site-rounds"
    ),
]

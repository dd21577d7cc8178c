from django.urls import path

from qc import apis

scan = "campaigns/<int:campaign_id>/scans/<int:scan_id>/"
urlpatterns = [
    path(scan + "annotation/submit/", apis.SubmitApi.as_view(), name="api-submit"),
    path(scan + "findings/", apis.FindingsApi.as_view(), name="api-findings"),
    path(scan + "audit.csv", apis.AuditCsvApi.as_view(), name="api-scan-audit"),
    path("qc/checks/", apis.CheckQueueApi.as_view(), name="api-checks"),
    path("qc/checks/<int:check_id>/", apis.CheckDetailApi.as_view(), name="api-check"),
    path("qc/checks/<int:check_id>/verdict/", apis.CheckVerdictApi.as_view(), name="api-check-verdict"),
    path("qc/checks/<int:check_id>/reassign/", apis.CheckReassignApi.as_view(), name="api-check-reassign"),
    path("qc/spot-checks/", apis.SpotCheckQueueApi.as_view(), name="api-spot-checks"),
    path("qc/spot-checks/<int:spot_check_id>/", apis.SpotCheckDetailApi.as_view(), name="api-spot-check"),
    path(
        "qc/spot-checks/<int:spot_check_id>/verdict/",
        apis.SpotCheckVerdictApi.as_view(),
        name="api-spot-check-verdict",
    ),
    path(
        "qc/spot-checks/<int:spot_check_id>/reassign/",
        apis.SpotCheckReassignApi.as_view(),
        name="api-spot-check-reassign",
    ),
    path("qc/metrics/", apis.MetricsApi.as_view(), name="api-qc-metrics"),
    path("batches/<int:batch_id>/board/", apis.BatchBoardApi.as_view(), name="api-batch-board"),
    path("batches/<int:batch_id>/reopen/", apis.BatchReopenApi.as_view(), name="api-batch-reopen"),
]

from django.urls import path

from modelassist import apis

urlpatterns = [
    path("batches/<int:batch_id>/presegmentation/", apis.PresegApi.as_view(), name="api-presegmentation"),
    path(
        "campaigns/<int:campaign_id>/model-versions/",
        apis.ModelVersionListApi.as_view(),
        name="api-model-versions",
    ),
    path(
        "campaigns/<int:campaign_id>/model-versions/deactivate/",
        apis.ModelVersionDeactivateApi.as_view(),
        name="api-model-versions-deactivate",
    ),
    path(
        "model-versions/<int:version_id>/activate/",
        apis.ModelVersionActivateApi.as_view(),
        name="api-model-version-activate",
    ),
    path(
        "campaigns/<int:campaign_id>/scans/<int:scan_id>/report/",
        apis.ScanReportApi.as_view(),
        name="api-scan-report",
    ),
    path("patients/<str:pseudonym>/reports/", apis.PatientReportsApi.as_view(), name="api-patient-reports"),
    path("campaigns/<int:campaign_id>/exports/", apis.ExportListApi.as_view(), name="api-exports"),
    path("exports/<int:export_id>/", apis.ExportDetailApi.as_view(), name="api-export"),
    path("exports/<int:export_id>/download/", apis.ExportDownloadApi.as_view(), name="api-export-download"),
    path(
        "campaigns/<int:campaign_id>/training-runs/",
        apis.TrainingRunListApi.as_view(),
        name="api-training-runs",
    ),
    path("training-runs/<int:run_id>/", apis.TrainingRunDetailApi.as_view(), name="api-training-run"),
]

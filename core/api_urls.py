from django.urls import path

from core import apis

urlpatterns = [
    path("me/", apis.MeApi.as_view(), name="api-me"),
    path("institutions/", apis.InstitutionListApi.as_view()),
    path("campaigns/", apis.CampaignListApi.as_view(), name="api-campaigns"),
    path("campaigns/<int:campaign_id>/", apis.CampaignDetailApi.as_view(), name="api-campaign"),
    path("campaigns/<int:campaign_id>/batches/", apis.BatchListCreateApi.as_view(), name="api-batches"),
    path("batches/<int:batch_id>/assign/", apis.BatchAssignApi.as_view(), name="api-batch-assign"),
    path("batches/<int:batch_id>/close/", apis.BatchCloseApi.as_view(), name="api-batch-close"),
    path("scans/<int:scan_id>/", apis.ScanDetailApi.as_view(), name="api-scan"),
]

from django.urls import path

from annotation import apis

prefix = "campaigns/<int:campaign_id>/scans/<int:scan_id>/"
urlpatterns = [
    path("worklist/", apis.WorklistApi.as_view(), name="api-worklist"),
    path(prefix + "annotation/", apis.AnnotationApi.as_view(), name="api-annotation"),
    path(prefix + "annotation/labels/", apis.LabelsApi.as_view(), name="api-labels"),
    path(prefix + "annotation/revisions/", apis.RevisionCreateApi.as_view(), name="api-revisions"),
    path(prefix + "region-grow/", apis.RegionGrowApi.as_view(), name="api-region-grow"),
    path(prefix + "lung-mask/", apis.LungMaskApi.as_view(), name="api-lung-mask"),
]

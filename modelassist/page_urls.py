"""Model-assist pages (the root urls.py includes these at "")."""

from django.urls import path

from modelassist import pages

urlpatterns = [
    path("manage/models/", pages.models, name="manage-models"),
    path("reports/<int:campaign_id>/<int:scan_id>/", pages.report, name="scan-report"),
]

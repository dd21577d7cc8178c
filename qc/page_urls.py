"""QC pages (the root urls.py includes these at "")."""

from django.urls import path

from qc import pages

urlpatterns = [
    path("qc/checks/", pages.checks, name="qc-checks"),
    path("qc/checks/<int:check_id>/", pages.check, name="qc-check"),
    path("qc/spot-checks/", pages.spot_checks, name="qc-spot-checks"),
    path("qc/spot-checks/<int:spot_check_id>/", pages.spot_check, name="qc-spot-check"),
    path("qc/findings/<int:campaign_id>/<int:scan_id>/", pages.findings, name="qc-findings"),
    path("qc/dashboard/", pages.dashboard, name="qc-dashboard"),
]

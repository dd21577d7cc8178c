"""WADO-RS (the root urls.py includes these at "dicomweb/")."""

from django.urls import path

from platform_core import dicomweb

SERIES = "studies/<str:study>/series/<str:series>"

urlpatterns = [
    path(f"{SERIES}/metadata", dicomweb.series_metadata, name="dicomweb-series-metadata"),
    path(f"{SERIES}/pixeldata", dicomweb.series_pixeldata, name="dicomweb-series-pixeldata"),
    path(f"{SERIES}/instances/<str:sop>", dicomweb.instance_retrieve, name="dicomweb-instance"),
    path(
        f"{SERIES}/instances/<str:sop>/frames/<str:frames>",
        dicomweb.instance_frames,
        name="dicomweb-frames",
    ),
]

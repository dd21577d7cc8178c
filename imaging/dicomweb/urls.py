"""The one DICOMweb server (the root urls.py includes it at "dicomweb/"): WADO-RS (the viewer's
series metadata, frames and pixel data, and study/series/instance retrieval), QIDO-RS and STOW-RS.

STOW-RS records where a series came from (the PACS app's SeriesOrigin), so its handler lives in
the PACS app, which sits above imaging: it is found by the dotted path in
settings.CURATECT_STOW_HANDLER, so imaging never imports pacs.
"""

from functools import cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from imaging.dicomweb import qido, retrieve, wado

STUDY = "studies/<str:study>"
SERIES = f"{STUDY}/series/<str:series>"


@cache
def _stow_handler():
    return import_string(settings.CURATECT_STOW_HANDLER)


@csrf_exempt  # STOW authenticates itself (session writes are CSRF-checked there)
def studies(request: HttpRequest, study: str | None = None) -> HttpResponse:
    """GET: QIDO-RS study search (or, with a study UID, WADO-RS retrieve); POST: STOW-RS."""
    if request.method == "POST":
        return _stow_handler()(request, study=study)
    if study is None:
        return qido.search_studies(request)
    return retrieve.retrieve_study(request, study=study)


urlpatterns = [
    path(f"{SERIES}/metadata", wado.series_metadata, name="dicomweb-series-metadata"),
    path(f"{SERIES}/pixeldata", wado.series_pixeldata, name="dicomweb-series-pixeldata"),
    path(f"{SERIES}/instances/<str:sop>", wado.instance_retrieve, name="dicomweb-instance"),
    path(f"{SERIES}/instances/<str:sop>/frames/<str:frames>", wado.instance_frames, name="dicomweb-frames"),
    path("studies", studies, name="dicomweb-studies"),
    path(STUDY, studies, name="dicomweb-study"),
    path(f"{STUDY}/metadata", retrieve.study_metadata, name="dicomweb-study-metadata"),
    path(f"{STUDY}/series", qido.search_series, name="dicomweb-study-series"),
    path(f"{STUDY}/instances", qido.search_instances, name="dicomweb-study-instances"),
    path(SERIES, retrieve.retrieve_series, name="dicomweb-series"),
    path(f"{SERIES}/instances", qido.search_instances, name="dicomweb-series-instances"),
    path(
        f"{SERIES}/instances/<str:sop>/metadata",
        retrieve.instance_metadata,
        name="dicomweb-instance-metadata",
    ),
    path("series", qido.search_series, name="dicomweb-all-series"),
    path("instances", qido.search_instances, name="dicomweb-all-instances"),
]

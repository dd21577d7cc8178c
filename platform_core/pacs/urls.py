"""DICOMweb beyond the viewer's WADO-RS: QIDO-RS, STOW-RS and study/series retrieval.

The root urls.py includes these at "dicomweb/" after platform_core.dicomweb_urls, so the
viewer's resources (series metadata, instances, frames, pixeldata) keep their views.
"""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from platform_core.pacs import qido, retrieve, stow

STUDY = "studies/<str:study>"
SERIES = f"{STUDY}/series/<str:series>"


@csrf_exempt  # STOW authenticates itself (session writes are CSRF-checked there)
def studies(request: HttpRequest, study: str | None = None) -> HttpResponse:
    """GET: QIDO-RS study search (or, with a study UID, WADO-RS retrieve); POST: STOW-RS."""
    if request.method == "POST":
        return stow.store_instances(request, study=study)
    if study is None:
        return qido.search_studies(request)
    return retrieve.retrieve_study(request, study=study)


urlpatterns = [
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

"""Root URLs: pages, the JSON API of each app, DICOMweb, the OpenAPI schema, admin."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("platform_core.api_urls")),
    path("api/", include("annotation.urls")),
    path("api/", include("qc.urls")),
    path("api/", include("modelassist.urls")),
    path("dicomweb/", include("platform_core.dicomweb_urls")),
    path("dicomweb/", include("platform_core.pacs.urls")),
    path("api/pacs/", include("platform_core.pacs.api_urls")),
    path("", include("platform_core.page_urls")),
    path("", include("platform_core.manage_page_urls")),
    path("", include("qc.page_urls")),
    path("", include("modelassist.page_urls")),
]

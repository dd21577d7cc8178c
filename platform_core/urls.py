"""Root URLs: pages, the JSON API of each app, DICOMweb, the OpenAPI schema, admin."""

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

# Swagger UI comes from its CDN and styles itself inline; only that page's policy allows it.
# The split view serves its start-up script from here instead of inline.
SWAGGER_CDN = "https://cdn.jsdelivr.net"
swagger_ui = csp_update(
    {
        "script-src": [SWAGGER_CDN],
        "style-src": [SWAGGER_CDN, UNSAFE_INLINE],
        "img-src": [SELF, SWAGGER_CDN, "data:"],
    }
)(SpectacularSwaggerSplitView.as_view(url_name="schema"))

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", swagger_ui, name="api-docs"),
    path("api/", include("core.tokens.api_urls")),
    path("api/", include("core.api_urls")),
    path("api/", include("imaging.api_urls")),
    path("api/", include("annotation.urls")),
    path("api/", include("qc.urls")),
    path("api/", include("modelassist.urls")),
    path("api/", include("federation.urls")),
    path("dicomweb/", include("imaging.dicomweb.urls")),
    path("api/pacs/", include("pacs.api_urls")),
    path("", include("core.page_urls")),
    path("", include("core.tokens.page_urls")),
    path("", include("core.manage_page_urls")),
    path("", include("qc.page_urls")),
    path("", include("modelassist.page_urls")),
    path("", include("federation.page_urls")),
]

# The app's own error pages (JSON under /api/ and /dicomweb/); Django's are for DEBUG only.
handler400 = "platform_core.security.bad_request"
handler403 = "platform_core.security.permission_denied"
handler404 = "platform_core.security.page_not_found"
handler500 = "platform_core.security.server_error"

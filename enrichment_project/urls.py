from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from enrichment_project.health import healthz, metrics, readyz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("enrichment.urls")),
    path("api/v1/", include("credits.urls")),
    path("api/v1/", include("persons.urls")),
    path("api/v1/", include("webhooks.urls")),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", healthz),
    path("readyz", readyz),
    path("metrics", metrics),
]

handler400 = "enrichment_project.errors.bad_request_view"
handler404 = "enrichment_project.errors.not_found_view"
handler500 = "enrichment_project.errors.server_error_view"

from django.urls import path

from enrichment import apis

urlpatterns = [
    path("operations/enrichment/batch", apis.BatchEnrichmentApi.as_view()),
    path("operations/enrichment/batch/query", apis.BatchQueryApi.as_view()),
    path("operations/enrichment/<str:person_id>", apis.PersonEnrichmentApi.as_view()),
    path("enrichments", apis.EnrichmentListApi.as_view()),
    path("enrichments/<str:enrichment_id>", apis.EnrichmentDetailApi.as_view()),
    path("enrichments/<str:enrichment_id>/cancel", apis.EnrichmentCancelApi.as_view()),
]

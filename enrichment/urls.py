from django.urls import path

from enrichment import apis

urlpatterns = [
    path("operations/enrichment/batch", apis.BatchEnrichmentApi.as_view()),
    path("operations/enrichment/batch/query", apis.BatchQueryApi.as_view()),
    path("operations/enrichment/batch/estimate", apis.BatchEstimateApi.as_view()),
    # Before the person path, which would take "bulk" for a person id.
    path("operations/enrichment/bulk", apis.BulkEnrichmentApi.as_view()),
    path("operations/enrichment/<str:person_id>", apis.PersonEnrichmentApi.as_view()),
    path("enrichment-batches", apis.EnrichmentBatchListApi.as_view()),
    path("enrichment-batches/<str:batch_id>", apis.EnrichmentBatchDetailApi.as_view()),
    path("enrichments", apis.EnrichmentListApi.as_view()),
    path("enrichments/<str:enrichment_id>", apis.EnrichmentDetailApi.as_view()),
    path("enrichments/<str:enrichment_id>/cancel", apis.EnrichmentCancelApi.as_view()),
]

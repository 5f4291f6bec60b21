from django.urls import path

from webhooks import apis

urlpatterns = [
    path("webhook-endpoints", apis.WebhookEndpointListApi.as_view()),
    path("webhook-endpoints/<str:endpoint_id>", apis.WebhookEndpointDetailApi.as_view()),
    path(
        "webhook-endpoints/<str:endpoint_id>/rotate-secret",
        apis.WebhookEndpointRotateSecretApi.as_view(),
    ),
    path("webhook-endpoints/<str:endpoint_id>/deliveries", apis.WebhookDeliveryListApi.as_view()),
    path(
        "webhook-endpoints/<str:endpoint_id>/deliveries/<str:delivery_id>/retry",
        apis.WebhookDeliveryRetryApi.as_view(),
    ),
]

"""The admin pages of endpoints and deliveries: read-only, never showing a secret, one query
count for any number of rows, and a retry action through the service."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.webhooks.conftest import record_events
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import webhook_endpoint_rotate_secret

pytestmark = pytest.mark.django_db


def test_pages_show_endpoints_and_deliveries_but_never_a_secret(
    admin_client, tenant, make_endpoint
):
    endpoint = webhook_endpoint_rotate_secret(endpoint=make_endpoint(tenant.organization))
    record_events(tenant.organization, count=2)
    WebhookDelivery.objects.update(status="failed", error="HTTP 500", status_code=500)
    delivery = WebhookDelivery.objects.first()
    pages = [
        reverse("admin:webhooks_webhookendpoint_changelist"),
        reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk]),
        reverse("admin:webhooks_webhookdelivery_changelist"),
        reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk]),
    ]

    contents = [admin_client.get(page) for page in pages]

    assert [response.status_code for response in contents] == [200] * 4
    for response in contents:
        text = response.content.decode()
        assert endpoint.secret not in text and endpoint.previous_secret not in text
        assert endpoint.secret.removeprefix("whsec_") not in text
    assert "HTTP 500" in contents[1].content.decode()  # the endpoint's recent deliveries


def _changelist_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_the_deliveries_list_costs_the_same_queries_for_3_and_30_rows(
    admin_client, tenant, make_endpoint
):
    make_endpoint(tenant.organization)
    url = reverse("admin:webhooks_webhookdelivery_changelist")
    record_events(tenant.organization, count=3)
    few = _changelist_queries(admin_client, url)
    record_events(tenant.organization, count=27)
    assert _changelist_queries(admin_client, url) == few


def test_the_retry_action_queues_deliveries_of_enabled_endpoints_only(
    admin_client, tenant, make_endpoint
):
    enabled, disabled = make_endpoint(tenant.organization), make_endpoint(tenant.organization)
    record_events(tenant.organization)
    WebhookDelivery.objects.update(status="failed", next_attempt_at=None)
    WebhookEndpoint.objects.filter(pk=disabled.pk).update(disabled=True)

    response = admin_client.post(
        reverse("admin:webhooks_webhookdelivery_changelist"),
        {
            "action": "retry",
            "_selected_action": [
                str(pk) for pk in WebhookDelivery.objects.values_list("pk", flat=True)
            ],
        },
        follow=True,
    )

    assert (
        "Queued 1 delivery(ies) again. 1 belong to a disabled endpoint" in response.content.decode()
    )
    statuses = dict(WebhookDelivery.objects.values_list("endpoint_id", "status"))
    assert statuses == {enabled.pk: "pending", disabled.pk: "failed"}

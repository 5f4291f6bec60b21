"""Reads. Every selector that serves a request takes the organization."""

import uuid

from django.db.models import QuerySet

from organizations.models import Organization
from webhooks.models import WebhookDelivery, WebhookEndpoint


def webhook_endpoints_of(*, organization: Organization) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(organization=organization)


def webhook_endpoint_get(
    *, organization: Organization, endpoint_id: uuid.UUID
) -> WebhookEndpoint | None:
    return webhook_endpoints_of(organization=organization).filter(pk=endpoint_id).first()


def webhook_deliveries_of(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(endpoint=endpoint).select_related("event")


def webhook_delivery_get(
    *, endpoint: WebhookEndpoint, delivery_id: uuid.UUID
) -> WebhookDelivery | None:
    return webhook_deliveries_of(endpoint=endpoint).filter(pk=delivery_id).first()

"""Receivers are real HTTP servers on 127.0.0.1 (pytest-httpserver): the tests open the loopback
network to them, as WEBHOOK_ALLOWED_NETWORKS does for a self-hosted install."""

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook
from werkzeug import Request

from organizations.models import Organization
from webhooks.events import ENRICHMENT_COMPLETED
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from webhooks.services import webhook_endpoint_create, webhook_events_record

HOOK_PATH = "/hook"


@pytest.fixture
def local_receivers(settings) -> None:
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.WEBHOOK_ALLOW_HTTP = True


@pytest.fixture
def receiver(local_receivers: None, httpserver_ipv4: HTTPServer) -> HTTPServer:
    return httpserver_ipv4


@pytest.fixture
def make_endpoint(receiver: HTTPServer) -> Callable[..., WebhookEndpoint]:
    def make(
        organization: Organization, events: tuple[str, ...] = (ENRICHMENT_COMPLETED,)
    ) -> WebhookEndpoint:
        return webhook_endpoint_create(
            organization=organization, url=receiver.url_for(HOOK_PATH), events=events
        )

    return make


def record_events(organization: Organization, count: int = 1) -> list[WebhookEvent]:
    with transaction.atomic():
        return webhook_events_record(
            organization_id=organization.pk,
            events=[(ENRICHMENT_COMPLETED, {"n": n}) for n in range(count)],
        )


def make_due(*deliveries: WebhookDelivery) -> None:
    """Stands in for the wait until the next attempt is due."""
    WebhookDelivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def verified_body(request: Request, *secrets: str) -> dict:
    """The body, once every given secret verified the request's signature."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    for secret in secrets:
        Webhook(secret).verify(request.get_data(), headers)
    return json.loads(request.get_data())

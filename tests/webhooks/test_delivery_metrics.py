"""enrichment_webhook_deliveries_total{outcome}: each recorded outcome of a real delivery to a
local receiver moves the counter by exactly one, once the outcome's transaction commits."""

import pytest

from tests.enrichment.prometheus import Samples, labels, scrape
from tests.webhooks.conftest import HOOK_PATH, make_due, record_events
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_deliveries_send

pytestmark = pytest.mark.django_db
OUTCOMES = ("delivered", "failed_attempt", "failed", "disabled")


def counted(samples: Samples) -> dict[str, float]:
    return {
        outcome: samples.get(("enrichment_webhook_deliveries_total", labels(outcome=outcome)), 0)
        for outcome in OUTCOMES
    }


def moved(before: dict[str, float]) -> dict[str, float]:
    after = counted(scrape())
    return {
        outcome: after[outcome] - before[outcome]
        for outcome in OUTCOMES
        if after[outcome] != before[outcome]
    }


def send_and_commit(django_capture_on_commit_callbacks) -> dict[str, float]:
    """Sends the due deliveries; asserts nothing is counted before the commit, and returns what
    the commit's callbacks counted."""
    before = counted(scrape())
    with django_capture_on_commit_callbacks() as callbacks:
        assert webhook_deliveries_send() >= 1
    assert moved(before) == {}, "counted before the outcome committed"
    for callback in callbacks:
        callback()
    return moved(before)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(204, {"delivered": 1}), (500, {"failed_attempt": 1}), (503, {"failed_attempt": 1})],
)
def test_one_attempt_counts_one_outcome(
    tenant, receiver, make_endpoint, django_capture_on_commit_callbacks, status, expected
):
    make_endpoint(tenant.organization)
    receiver.expect_request(HOOK_PATH).respond_with_data(status=status)
    record_events(tenant.organization)

    assert send_and_commit(django_capture_on_commit_callbacks) == expected
    assert len(receiver.log) == 1


def test_the_last_scheduled_attempt_counts_failed(
    tenant, receiver, make_endpoint, settings, django_capture_on_commit_callbacks
):
    make_endpoint(tenant.organization)
    receiver.expect_request(HOOK_PATH).respond_with_data(status=500)
    record_events(tenant.organization)
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=len(settings.WEBHOOK_RETRY_SCHEDULE)
    )
    make_due(delivery)

    assert send_and_commit(django_capture_on_commit_callbacks) == {"failed": 1}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (
        "failed",
        len(settings.WEBHOOK_RETRY_SCHEDULE) + 1,
    )


def test_a_410_counts_failed_and_the_endpoints_other_pending_deliveries_disabled(
    tenant, receiver, make_endpoint, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_TASK_CHUNK_SIZE = 1
    make_endpoint(tenant.organization)
    receiver.expect_request(HOOK_PATH).respond_with_data(status=410)
    record_events(tenant.organization, count=3)

    assert send_and_commit(django_capture_on_commit_callbacks) == {"failed": 1, "disabled": 2}
    assert len(receiver.log) == 1

"""Delivery to real local receivers: signed, retried on the schedule, at least once, never
following a redirect, and disabling endpoints that are gone or failing for days."""

import socket
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from werkzeug import Response

from tests.webhooks.conftest import HOOK_PATH, make_due, record_events, verified_body
from webhooks.events import ENRICHMENT_BATCH_COMPLETED, ENRICHMENT_COMPLETED
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.sending import Attempt
from webhooks.services import (
    webhook_deliveries_claim,
    webhook_deliveries_record,
    webhook_deliveries_send,
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_events_record,
)

pytestmark = pytest.mark.django_db


def test_delivery_is_signed_with_standard_webhooks_headers(tenant, receiver, make_endpoint):
    endpoint = make_endpoint(tenant.organization)
    receiver.expect_oneshot_request(HOOK_PATH, method="POST").respond_with_data(status=204)
    [event] = record_events(tenant.organization)

    assert webhook_deliveries_send() == 1

    [(request, _)] = receiver.log
    body = verified_body(request, endpoint.secret)
    assert body == {
        "type": ENRICHMENT_COMPLETED,
        "timestamp": event.created_at.isoformat(),
        "data": {"n": 0},
    }
    assert request.headers["webhook-id"] == str(event.pk)
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 5
    assert request.headers["webhook-signature"].startswith("v1,")
    assert request.headers["content-type"] == "application/json"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.status_code, delivery.attempts) == ("delivered", 204, 1)
    assert delivery.delivered_at and delivery.next_attempt_at is None


def test_receiver_down_then_up_gets_the_event_with_the_same_id(tenant, receiver, make_endpoint):
    """Down through the first four attempts (over two and a half hours of schedule), then up:
    the event arrives, under the id it had from the start."""
    make_endpoint(tenant.organization)
    [event] = record_events(tenant.organization)
    delivery = WebhookDelivery.objects.get()
    receiver.expect_request(HOOK_PATH).respond_with_data(status=503)
    for attempt, expected_delay in enumerate([5, 300, 1800, 7200], start=1):
        before = timezone.now()
        assert webhook_deliveries_send() == 1
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.status_code) == (
            "pending",
            attempt,
            503,
        )
        assert delivery.error == "HTTP 503"
        delay = (delivery.next_attempt_at - before).total_seconds()
        assert expected_delay * 0.9 - 1 <= delay <= expected_delay * 1.1 + 1
        assert webhook_deliveries_send() == 0, "sent again before it was due"
        make_due(delivery)
    receiver.clear()
    receiver.expect_request(HOOK_PATH).respond_with_data(status=200)

    assert webhook_deliveries_send() == 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 5)
    [(request, _)] = receiver.log
    assert request.headers["webhook-id"] == str(event.pk)
    delivery.endpoint.refresh_from_db()
    assert delivery.endpoint.failing_since is None


def test_a_delivery_fails_for_good_after_eight_attempts(tenant, receiver, make_endpoint, settings):
    make_endpoint(tenant.organization)
    record_events(tenant.organization)
    delivery = WebhookDelivery.objects.get()
    receiver.expect_request(HOOK_PATH).respond_with_data(status=500)
    for _ in range(len(settings.WEBHOOK_RETRY_SCHEDULE) + 1):
        make_due(delivery)
        assert webhook_deliveries_send() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 8, None)
    assert webhook_deliveries_send() == 0


def test_connection_refused_and_timeouts_are_retried(tenant, local_receivers, settings, receiver):
    settings.WEBHOOK_TIMEOUT = 0.2
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    down = webhook_endpoint_create(
        organization=tenant.organization,
        url=f"http://127.0.0.1:{port}/hook",
        events=[ENRICHMENT_COMPLETED],
    )
    slow = webhook_endpoint_create(
        organization=tenant.organization,
        url=receiver.url_for("/slow"),
        events=[ENRICHMENT_COMPLETED],
    )
    released = threading.Event()
    receiver.expect_request("/slow").respond_with_handler(
        lambda request: released.wait(5) and Response(status=200)
    )
    record_events(tenant.organization)

    webhook_deliveries_send()

    errors = dict(WebhookDelivery.objects.values_list("endpoint_id", "error"))
    assert errors[down.pk] == "connection error: ConnectError"
    assert errors[slow.pk] == "timeout"
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"pending"}
    released.set()  # the slow answer ends within this test, not in the next one's log
    while not receiver.log:
        time.sleep(0.01)


def test_redirects_are_failures_and_not_followed(tenant, receiver, make_endpoint):
    make_endpoint(tenant.organization)
    receiver.expect_request(HOOK_PATH).respond_with_data(
        status=307, headers={"Location": receiver.url_for("/elsewhere")}
    )
    record_events(tenant.organization)

    webhook_deliveries_send()

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.status_code) == ("pending", 307)
    assert "redirects are not followed" in delivery.error
    assert [request.path for request, _ in receiver.log] == [HOOK_PATH]


def test_410_disables_the_endpoint_and_ends_its_pending_deliveries(
    tenant, receiver, make_endpoint, settings
):
    settings.WEBHOOK_TASK_CHUNK_SIZE = 1
    endpoint = make_endpoint(tenant.organization)
    receiver.expect_request(HOOK_PATH).respond_with_data(status=410)
    record_events(tenant.organization, count=3)

    assert webhook_deliveries_send() == 1

    endpoint.refresh_from_db()
    assert endpoint.disabled and "410" in endpoint.disabled_reason
    outcomes = sorted(WebhookDelivery.objects.values_list("status", "error"))
    assert outcomes == [
        ("failed", "HTTP 410"),
        ("failed", "endpoint disabled"),
        ("failed", "endpoint disabled"),
    ]
    assert record_events(tenant.organization) == [], "a disabled endpoint gets no new events"
    assert len(receiver.log) == 1


@pytest.mark.parametrize(
    "failing_for, disabled", [(timedelta(days=4), False), (timedelta(days=5, seconds=1), True)]
)
def test_an_endpoint_failing_for_five_days_is_disabled(
    tenant, receiver, make_endpoint, failing_for, disabled
):
    endpoint = make_endpoint(tenant.organization)
    endpoint.failing_since = timezone.now() - failing_for
    endpoint.save()
    receiver.expect_request(HOOK_PATH).respond_with_data(status=500)
    record_events(tenant.organization)

    webhook_deliveries_send()

    endpoint.refresh_from_db()
    assert endpoint.disabled is disabled
    assert endpoint.disabled_reason == ("every delivery failed for 5 days" if disabled else "")


def test_a_first_failure_starts_the_failure_clock_and_a_success_stops_it(
    tenant, receiver, make_endpoint
):
    endpoint = make_endpoint(tenant.organization)
    receiver.expect_oneshot_request(HOOK_PATH).respond_with_data(status=500)
    record_events(tenant.organization)
    webhook_deliveries_send()
    endpoint.refresh_from_db()
    started = endpoint.failing_since
    assert started is not None

    receiver.expect_oneshot_request(HOOK_PATH).respond_with_data(status=500)
    make_due(*WebhookDelivery.objects.all())
    webhook_deliveries_send()
    endpoint.refresh_from_db()
    assert endpoint.failing_since == started, "a later failure keeps the first failure's time"

    receiver.expect_oneshot_request(HOOK_PATH).respond_with_data(status=200)
    make_due(*WebhookDelivery.objects.all())
    webhook_deliveries_send()
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


def test_after_rotation_both_secrets_sign_for_24_hours(tenant, receiver, make_endpoint):
    endpoint = make_endpoint(tenant.organization)
    old_secret = endpoint.secret
    endpoint = webhook_endpoint_rotate_secret(endpoint=endpoint)
    receiver.expect_request(HOOK_PATH).respond_with_data(status=200)
    record_events(tenant.organization)
    webhook_deliveries_send()

    [(request, _)] = receiver.log
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    verified_body(request, old_secret, endpoint.secret)

    endpoint.previous_secret_expires_at = timezone.now() - timedelta(seconds=1)
    endpoint.save()
    record_events(tenant.organization)
    webhook_deliveries_send()
    request = receiver.log[-1][0]
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    verified_body(request, endpoint.secret)
    with pytest.raises(Exception, match="No matching signature"):
        verified_body(request, old_secret)


def test_only_subscribed_enabled_endpoints_get_a_delivery(tenant, make_tenant, make_endpoint):
    both = make_endpoint(tenant.organization, (ENRICHMENT_COMPLETED, ENRICHMENT_BATCH_COMPLETED))
    batches = make_endpoint(tenant.organization, (ENRICHMENT_BATCH_COMPLETED,))
    disabled = make_endpoint(tenant.organization)
    WebhookEndpoint.objects.filter(pk=disabled.pk).update(disabled=True)
    make_endpoint(make_tenant().organization)  # another organization's

    with transaction.atomic():
        events = webhook_events_record(
            organization_id=tenant.organization.pk,
            events=[(ENRICHMENT_COMPLETED, {"a": 1}), (ENRICHMENT_BATCH_COMPLETED, {"b": 2})],
        )

    assert len(events) == 2
    deliveries = set(WebhookDelivery.objects.values_list("event__type", "endpoint_id"))
    assert deliveries == {
        (ENRICHMENT_COMPLETED, both.pk),
        (ENRICHMENT_BATCH_COMPLETED, both.pk),
        (ENRICHMENT_BATCH_COMPLETED, batches.pk),
    }


def test_an_unknown_event_type_is_a_programming_error(tenant, make_endpoint):
    make_endpoint(tenant.organization)
    with pytest.raises(ValueError, match=r"person\.deleted"), transaction.atomic():
        webhook_events_record(
            organization_id=tenant.organization.pk, events=[("person.deleted", {})]
        )
    assert not WebhookDelivery.objects.exists()


def test_recording_costs_one_select_without_endpoints_and_two_statements_with_them(
    tenant, make_endpoint, django_assert_num_queries
):
    never_consumed = (pytest.fail("rendered without a subscriber") for _ in range(1))
    with transaction.atomic(), django_assert_num_queries(1):
        webhook_events_record(organization_id=tenant.organization.pk, events=never_consumed)
    make_endpoint(tenant.organization)
    make_endpoint(tenant.organization)
    for count in (1, 200):
        # The endpoints' SELECT; the events and their deliveries inserted together.
        with transaction.atomic(), django_assert_num_queries(2):
            record_events_inline = webhook_events_record(
                organization_id=tenant.organization.pk,
                events=[(ENRICHMENT_COMPLETED, {"n": n}) for n in range(count)],
            )
        assert len(record_events_inline) == count
    assert WebhookDelivery.objects.count() == 2 * 201


def test_a_claimed_delivery_is_not_sent_again_until_its_lease_ends(tenant, make_endpoint):
    make_endpoint(tenant.organization)
    record_events(tenant.organization)
    [claimed] = webhook_deliveries_claim(limit=10)
    assert webhook_deliveries_claim(limit=10) == []
    claimed.refresh_from_db()
    assert claimed.status == DeliveryStatus.PENDING and claimed.attempts == 1
    assert claimed.next_attempt_at > timezone.now() + timedelta(seconds=200)


def synchronous_commit() -> str:
    """The setting of the transaction the test runs in (SET LOCAL lasts until its end)."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def test_the_outbox_write_commits_durably(tenant, make_endpoint):
    make_endpoint(tenant.organization)
    record_events(tenant.organization)
    assert synchronous_commit() == "on"


def test_claims_commit_without_waiting_for_the_wal_flush(tenant, make_endpoint):
    make_endpoint(tenant.organization)
    record_events(tenant.organization)
    assert len(webhook_deliveries_claim(limit=10)) == 1
    assert synchronous_commit() == "off"


def test_outcomes_commit_without_waiting_for_the_wal_flush(tenant, make_endpoint):
    make_endpoint(tenant.organization)
    record_events(tenant.organization)
    [delivery] = WebhookDelivery.objects.select_related("endpoint")
    webhook_deliveries_record(outcomes=[(delivery, Attempt(204, 3, ""))])
    assert synchronous_commit() == "off"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED


def test_a_jobs_outcomes_are_written_in_one_statement_whatever_their_number(
    tenant, make_endpoint, django_assert_num_queries
):
    """The savepoint, the asynchronous commit, the deliveries' UPDATE, the endpoint's failure
    clock stopped, the release."""
    make_endpoint(tenant.organization)
    for count in (1, 30):
        record_events(tenant.organization, count=count)
        deliveries = list(WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING))
        assert len(deliveries) == count
        with django_assert_num_queries(5):
            webhook_deliveries_record(
                outcomes=[(delivery, Attempt(204, n, "")) for n, delivery in enumerate(deliveries)]
            )
        written = WebhookDelivery.objects.filter(pk__in=[d.pk for d in deliveries])
        assert sorted(written.values_list("status", "status_code", "duration_ms", "error")) == [
            ("delivered", 204, n, "") for n in range(count)
        ]
        assert not written.filter(delivered_at__isnull=True).exists()
        assert not written.filter(next_attempt_at__isnull=False).exists()


@pytest.fixture
def rebinding_dns(monkeypatch):
    """`receiver.test` answers 127.0.0.1 as long as `answers` holds one, then the metadata
    address: a name whose DNS answer changes between the check and the connection."""
    real = socket.getaddrinfo
    answers: list[str] = []
    lookups: list[str] = []

    def resolve(host, port, *args, **kwargs):
        if host != "receiver.test":
            return real(host, port, *args, **kwargs)
        address = answers.pop(0) if answers else "169.254.169.254"
        lookups.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return answers, lookups


def test_delivery_connects_to_the_checked_address_not_a_second_answer(
    tenant, receiver, rebinding_dns
):
    answers, lookups = rebinding_dns
    answers += ["127.0.0.1", "127.0.0.1"]  # the save-time check, the delivery's check
    endpoint = webhook_endpoint_create(
        organization=tenant.organization,
        url=f"http://receiver.test:{receiver.port}{HOOK_PATH}",
        events=[ENRICHMENT_COMPLETED],
    )
    receiver.expect_request(HOOK_PATH).respond_with_data(status=200)
    record_events(tenant.organization)

    webhook_deliveries_send()

    # Any later lookup would have answered 169.254.169.254; there was none.
    assert lookups == ["127.0.0.1", "127.0.0.1"]
    [(request, _)] = receiver.log
    assert request.headers["host"] == f"receiver.test:{receiver.port}"
    assert WebhookDelivery.objects.get().status == "delivered"
    assert endpoint.url.startswith("http://receiver.test")


def test_every_delivery_checks_the_address_again(tenant, receiver, rebinding_dns):
    answers, _ = rebinding_dns
    answers.append("127.0.0.1")  # accepted at save time, rebound to the metadata address after
    webhook_endpoint_create(
        organization=tenant.organization,
        url=f"http://receiver.test:{receiver.port}{HOOK_PATH}",
        events=[ENRICHMENT_COMPLETED],
    )
    record_events(tenant.organization)

    webhook_deliveries_send()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending" and delivery.status_code is None
    assert delivery.error == (
        "address refused: receiver.test resolves to 169.254.169.254: not a public address"
    )
    assert receiver.log == []

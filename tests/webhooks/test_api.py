"""The endpoint and delivery API: secrets shown once, the address rules at save time, and
another organization's endpoints and deliveries answered 404."""

import base64

import pytest

from tests.webhooks.conftest import HOOK_PATH, record_events
from webhooks.events import ENRICHMENT_BATCH_COMPLETED, ENRICHMENT_COMPLETED
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import webhook_deliveries_send

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhook-endpoints"


@pytest.fixture
def hook_url(receiver) -> str:
    return receiver.url_for(HOOK_PATH)


def create(tenant, url: str, events=(ENRICHMENT_COMPLETED,), **extra) -> dict:
    response = tenant.client.post(URL, {"url": url, "events": list(events), **extra}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_create_answers_the_secret_once(tenant, hook_url):
    created = create(
        tenant,
        hook_url,
        (ENRICHMENT_COMPLETED, ENRICHMENT_BATCH_COMPLETED, ENRICHMENT_COMPLETED),
        description="CRM sync",
    )

    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 32
    assert created["events"] == [ENRICHMENT_COMPLETED, ENRICHMENT_BATCH_COMPLETED]
    assert (created["url"], created["description"], created["disabled"]) == (
        hook_url,
        "CRM sync",
        False,
    )
    detail = tenant.client.get(f"{URL}/{created['id']}").json()
    listed = tenant.client.get(URL).json()
    assert "secret" not in detail and detail == {
        key: value for key, value in created.items() if key != "secret"
    }
    assert [item["id"] for item in listed["results"]] == [created["id"]]
    assert "secret" not in listed["results"][0]


def test_a_refused_url_is_a_400_with_details_url_and_creates_nothing(tenant, local_receivers):
    response = tenant.client.post(
        URL,
        {"url": "http://169.254.169.254/latest", "events": [ENRICHMENT_COMPLETED]},
        format="json",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert "169.254.169.254" in error["details"]["url"]
    assert not WebhookEndpoint.objects.exists()


def test_plain_http_is_refused_unless_allowed(tenant, settings):
    settings.WEBHOOK_ALLOW_HTTP = False
    response = tenant.client.post(
        URL, {"url": "http://93.184.215.14/hook", "events": [ENRICHMENT_COMPLETED]}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"]["url"] == "the URL must use https"


@pytest.mark.parametrize(
    "body",
    [
        {"events": [ENRICHMENT_COMPLETED]},
        {"url": "https://93.184.215.14/", "events": []},
        {"url": "https://93.184.215.14/", "events": ["person.deleted"]},
        {"url": "https://93.184.215.14/", "events": "enrichment.completed"},
        {"url": 5, "events": [ENRICHMENT_COMPLETED]},
    ],
)
def test_invalid_bodies_are_refused(tenant, body):
    response = tenant.client.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert not WebhookEndpoint.objects.exists()


def test_patch_changes_fields_and_enabling_clears_the_reason(tenant, hook_url, receiver):
    created = create(tenant, hook_url)
    path = f"{URL}/{created['id']}"

    disabled = tenant.client.patch(path, {"disabled": True}, format="json").json()
    assert (disabled["disabled"], disabled["disabledReason"]) == (True, "disabled through the API")
    changed = tenant.client.patch(
        path,
        {
            "disabled": False,
            "events": [ENRICHMENT_BATCH_COMPLETED],
            "url": receiver.url_for("/other"),
            "description": "new",
        },
        format="json",
    ).json()

    assert (changed["disabled"], changed["disabledReason"]) == (False, None)
    assert changed["events"] == [ENRICHMENT_BATCH_COMPLETED]
    assert changed["url"] == receiver.url_for("/other") and changed["description"] == "new"
    refused = tenant.client.patch(path, {"url": "https://10.0.0.1/"}, format="json")
    assert refused.status_code == 400 and "url" in refused.json()["error"]["details"]
    assert WebhookEndpoint.objects.get().url == receiver.url_for("/other")


def test_rotate_secret_answers_a_new_secret_and_keeps_the_old_one_for_a_day(tenant, hook_url):
    created = create(tenant, hook_url)

    rotated = tenant.client.post(f"{URL}/{created['id']}/rotate-secret").json()

    assert rotated["secret"] != created["secret"] and rotated["secret"].startswith("whsec_")
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.secret, endpoint.previous_secret) == (rotated["secret"], created["secret"])
    remaining = endpoint.previous_secret_expires_at - endpoint.updated_at
    assert 23.9 * 3600 < remaining.total_seconds() <= 24 * 3600


def test_delete_removes_the_endpoint_and_its_deliveries(tenant, hook_url):
    created = create(tenant, hook_url)
    record_events(tenant.organization)

    assert tenant.client.delete(f"{URL}/{created['id']}").status_code == 204

    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()
    assert tenant.client.get(f"{URL}/{created['id']}").status_code == 404


def test_deliveries_list_newest_first_with_cursor_pages_and_manual_retry(
    tenant, hook_url, receiver
):
    created = create(tenant, hook_url)
    receiver.expect_request(HOOK_PATH).respond_with_data(status=500)
    for _ in range(3):
        record_events(tenant.organization)
    webhook_deliveries_send()
    deliveries = f"{URL}/{created['id']}/deliveries"

    first = tenant.client.get(deliveries, {"limit": 2}).json()
    second = tenant.client.get(first["next"]).json()

    listed = first["results"] + second["results"]
    newest_first = WebhookDelivery.objects.order_by("-created_at", "-id")
    assert [item["id"] for item in listed] == [
        str(pk) for pk in newest_first.values_list("pk", flat=True)
    ]
    item = listed[0]
    assert (item["eventType"], item["status"], item["attempt"], item["statusCode"]) == (
        ENRICHMENT_COMPLETED,
        "pending",
        1,
        500,
    )
    assert item["error"] == "HTTP 500" and item["nextAttemptAt"] and item["durationMs"] >= 0

    receiver.clear()
    receiver.expect_request(HOOK_PATH).respond_with_data(status=200)
    retried = tenant.client.post(f"{deliveries}/{item['id']}/retry")
    assert retried.status_code == 202 and retried.json()["status"] == "pending"
    assert webhook_deliveries_send() == 1, "only the retried delivery is due"
    again = tenant.client.get(deliveries).json()["results"][0]
    assert (again["id"], again["status"], again["attempt"]) == (item["id"], "delivered", 2)


def test_retry_on_a_disabled_endpoint_is_a_409(tenant, hook_url):
    created = create(tenant, hook_url)
    record_events(tenant.organization)
    tenant.client.patch(f"{URL}/{created['id']}", {"disabled": True}, format="json")
    delivery = WebhookDelivery.objects.get()

    response = tenant.client.post(f"{URL}/{created['id']}/deliveries/{delivery.pk}/retry")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "INVALID_STATE"


def test_another_organizations_endpoints_and_deliveries_are_not_found(
    tenant, make_tenant, hook_url
):
    theirs = create(tenant, hook_url)
    record_events(tenant.organization)
    delivery = WebhookDelivery.objects.get()
    intruder = make_tenant()
    endpoint = f"{URL}/{theirs['id']}"

    responses = [
        intruder.client.get(endpoint),
        intruder.client.patch(endpoint, {"description": "x"}, format="json"),
        intruder.client.delete(endpoint),
        intruder.client.post(f"{endpoint}/rotate-secret"),
        intruder.client.get(f"{endpoint}/deliveries"),
        intruder.client.post(f"{endpoint}/deliveries/{delivery.pk}/retry"),
    ]

    assert [response.status_code for response in responses] == [404] * 6
    assert {response.json()["error"]["code"] for response in responses} == {"NOT_FOUND"}
    assert intruder.client.get(URL).json()["results"] == []
    own = create(intruder, hook_url)
    other_delivery = tenant.client.post(f"{URL}/{own['id']}/deliveries/{delivery.pk}/retry")
    assert other_delivery.status_code == 404
    assert WebhookEndpoint.objects.get(pk=theirs["id"]).description == ""


def test_malformed_ids_are_not_found(tenant):
    assert tenant.client.get(f"{URL}/not-a-uuid").status_code == 404
    assert tenant.client.get(f"{URL}/not-a-uuid/deliveries").status_code == 404

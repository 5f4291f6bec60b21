import uuid
from collections.abc import Callable
from datetime import timedelta

from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from credits.models import CreditAccount, CreditTransaction
from enrichment.admin import CHART_DAYS
from enrichment.models import Enrichment, Status
from enrichment.queueing import enqueue_enrichments
from enrichment.services import enrichments_request
from tests.admin.conftest import (
    Mix,
    age,
    finish_with_data,
    person_named,
    request_enrichments,
)
from tests.conftest import Tenant

CHANGELIST = "admin:enrichment_enrichment_changelist"


def listed(client: Client, **params: str) -> set[uuid.UUID]:
    """The ids of the enrichments a changelist shows."""
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return {enrichment.pk for enrichment in response.context["cl"].result_list}


def ids(*enrichments: Enrichment) -> set[uuid.UUID]:
    return {enrichment.pk for enrichment in enrichments}


def run_action(client: Client, action: str, *enrichments: Enrichment) -> str:
    response = client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [str(e.pk) for e in enrichments]},
        follow=True,
    )
    assert response.status_code == 200
    return response.content.decode()


def test_list_filters_by_status_field_organization_stuck_and_date(
    admin_client: Client, mix: Mix, make_tenant: Callable[..., Tenant]
) -> None:
    other = make_tenant(credits=100)
    phones = request_enrichments(other, 1, field="phones")
    all_of_mix = ids(mix.stuck, mix.exhausted, mix.fresh, mix.finished, mix.failed)

    assert listed(admin_client) == all_of_mix | ids(*phones)
    assert listed(admin_client, status__exact="pending") == ids(
        mix.stuck, mix.exhausted, mix.fresh, *phones
    )
    assert listed(admin_client, status__exact="finished") == ids(mix.finished)
    assert listed(admin_client, field__exact="phones") == ids(*phones)
    assert listed(admin_client, organization__id__exact=str(other.organization.pk)) == ids(*phones)
    assert listed(admin_client, stuck="yes") == ids(mix.stuck, mix.exhausted)
    age([mix.stuck, mix.exhausted], seconds=2 * 24 * 3600)
    today = timezone.now().date()
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    recent = listed(admin_client, created_at__gte=str(midnight))
    assert recent == all_of_mix - ids(mix.stuck, mix.exhausted) | ids(*phones)
    assert listed(
        admin_client, created_at__year=str(today.year), created_at__month=str(today.month)
    ) >= ids(mix.fresh)


def test_list_searches_by_person_name_company_domain_and_ids(
    admin_client: Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant(credits=100)
    ada = person_named(tenant, "Ada", "Lovelace", "engines.example")
    grace = person_named(tenant, "Grace", "Hopper", "navy.example")
    by_ada, by_grace = enrichments_request(
        organization=tenant.organization,
        user=tenant.user,
        person_ids=[ada.pk, grace.pk],
        field="emails",
    ).enrichments

    assert listed(admin_client, q="Ada Lovelace") == ids(by_ada)
    assert listed(admin_client, q="hopper") == ids(by_grace)
    assert listed(admin_client, q="engines.example") == ids(by_ada)
    assert listed(admin_client, q=str(by_grace.pk)) == ids(by_grace)
    assert listed(admin_client, q=str(ada.pk)) == ids(by_ada)


def test_detail_shows_the_found_data_provider_and_charge_and_is_read_only(
    admin_client: Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant(credits=10)
    enrichment = finish_with_data(
        request_enrichments(tenant, 1)[0], "ada@found.example", "a.lovelace@found.example"
    )
    url = reverse("admin:enrichment_enrichment_change", args=[enrichment.pk])

    page = admin_client.get(url).content.decode()

    assert "ada@found.example (work)<br>a.lovelace@found.example (work)" in page
    assert "sandbox" in page
    charge = CreditTransaction.objects.get(reference_id=enrichment.pk)
    assert reverse("admin:credits_credittransaction_change", args=[charge.pk]) in page
    assert admin_client.post(url, {"status": "pending"}).status_code == 403
    enrichment.refresh_from_db()
    assert enrichment.status == Status.FINISHED


def test_requeue_queues_stuck_ones_times_out_exhausted_ones_and_leaves_the_rest(
    admin_client: Client,
    mix: Mix,
    make_tenant: Callable[..., Tenant],
    django_capture_on_commit_callbacks: Callable,
) -> None:
    unselected = request_enrichments(make_tenant(credits=10), 1)[0]
    age([unselected], seconds=3600)
    before = {e.pk: e for e in Enrichment.objects.all()}

    with django_capture_on_commit_callbacks() as callbacks:
        page = run_action(
            admin_client, "requeue", mix.stuck, mix.exhausted, mix.fresh, mix.finished, mix.failed
        )

    assert "Re-queued 1 enrichment(s). Ended 1 as timeout" in page
    assert (
        "Skipped 3: 1 finished (not pending), 1 failed (not pending), "
        "1 queued less than 15\xa0minutes ago." in page
    )
    # Among the commit callbacks (metrics count there too), one publishes the stuck one again.
    published = [c.args[0] for c in callbacks if getattr(c, "func", None) is enqueue_enrichments]
    assert published == [[mix.stuck.pk]]
    after = {e.pk: e for e in Enrichment.objects.all()}
    assert after[mix.stuck.pk].status == Status.PENDING
    assert after[mix.stuck.pk].queued_at > before[mix.stuck.pk].queued_at
    assert after[mix.exhausted.pk].status == Status.TIMEOUT
    for untouched in (mix.fresh, mix.finished, mix.failed, unselected):
        assert after[untouched.pk].updated_at == before[untouched.pk].updated_at
        assert after[untouched.pk].queued_at == before[untouched.pk].queued_at
    account = CreditAccount.objects.get(pk=mix.stuck.organization_id)
    assert account.reserved == 2  # stuck and fresh stay reserved; exhausted was released
    assert LogEntry.objects.filter(object_id=str(mix.stuck.pk), change_message="Re-queued")


def test_cancel_ends_pending_ones_and_releases_their_credits_and_leaves_the_rest(
    admin_client: Client, mix: Mix, make_tenant: Callable[..., Tenant]
) -> None:
    unselected = request_enrichments(make_tenant(credits=10), 1)[0]

    page = run_action(
        admin_client, "cancel", mix.stuck, mix.exhausted, mix.fresh, mix.finished, mix.failed
    )

    assert "Cancelled 3 enrichment(s); their credits were released." in page
    assert "Skipped 2: 1 finished (not pending), 1 failed (not pending)." in page
    statuses = dict(Enrichment.objects.values_list("pk", "status"))
    for cancelled in (mix.stuck, mix.exhausted, mix.fresh):
        assert statuses[cancelled.pk] == Status.CANCELLED
    assert statuses[mix.finished.pk] == Status.FINISHED
    assert statuses[mix.failed.pk] == Status.FAILED
    assert statuses[unselected.pk] == Status.PENDING
    assert Enrichment.objects.get(pk=mix.fresh.pk).error == "cancelled"
    assert CreditAccount.objects.get(pk=mix.stuck.organization_id).reserved == 0
    assert CreditAccount.objects.get(pk=unselected.organization_id).reserved == 1


def test_overview_counts_the_last_day_shows_the_oldest_pending_and_charts_charges(
    admin_client: Client, mix: Mix
) -> None:
    old_charge = finish_with_data(request_enrichments(mix.tenant, 1, field="phones")[0])
    CreditTransaction.objects.filter(reference_id=old_charge.pk).update(
        created_at=timezone.now() - timedelta(days=3)
    )
    Enrichment.objects.filter(pk=old_charge.pk).update(
        created_at=timezone.now() - timedelta(days=3)
    )

    response = admin_client.get(reverse("admin:enrichment_overview"))

    assert response.status_code == 200
    context = response.context
    last_day = {label: count for label, count, _ in context["last_day"]}
    for _, count, url in context["last_day"]:
        assert admin_client.get(url).context["cl"].result_count == count
    assert last_day == {
        "Pending": 3,
        "Finished": 1,
        "Failed": 1,
        "Timeout": 0,
        "Cancelled": 0,
    }
    assert (context["pending_count"], context["stuck_count"]) == (3, 2)
    assert context["oldest"].pk in (mix.stuck.pk, mix.exhausted.pk)
    assert context["oldest_age"] == "1\xa0hour"
    bars = context["chart"]["bars"]
    assert len(bars) == CHART_DAYS
    assert [bar.value for bar in bars][-4:] == [10, 0, 0, 1]
    page = response.content.decode()
    assert page.count('<rect class="bar"') == 2
    assert "11 in all" in page

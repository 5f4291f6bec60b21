import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from credits.models import CreditAccount, CreditTransaction
from credits.services import (
    InsufficientCredits,
    credit_account_lock,
    credits_grant,
    credits_release,
    credits_reserve,
)
from enrichment_project.errors import ValidationFailed
from tests.enrichment.test_batch_api import assert_error
from tests.factories import OrganizationFactory, UserFactory


def test_grant_and_adjustment_are_ledger_entries_that_move_the_balance(db):
    organization = OrganizationFactory()
    staff = UserFactory()

    grant = credits_grant(organization=organization, amount=100, memo="welcome", actor=staff)
    adjustment = credits_grant(organization=organization, amount=-30, memo="refund error")

    account = CreditAccount.objects.get(organization=organization)
    assert (account.balance, account.reserved) == (70, 0)
    assert (grant.kind, grant.amount, grant.balance_after, grant.actor) == (
        "grant",
        100,
        100,
        staff,
    )
    assert (adjustment.kind, adjustment.amount, adjustment.balance_after) == ("adjustment", -30, 70)


def test_adjustment_cannot_take_reserved_credits(db):
    organization = OrganizationFactory()
    credits_grant(organization=organization, amount=10)
    with transaction.atomic():
        credits_reserve(account=credit_account_lock(organization_id=organization.pk), amount=8)

    with pytest.raises(InsufficientCredits):
        credits_grant(organization=organization, amount=-5)
    with pytest.raises(ValidationFailed):
        credits_grant(organization=organization, amount=0)

    account = CreditAccount.objects.get(organization=organization)
    assert (account.balance, account.reserved) == (10, 8)
    assert CreditTransaction.objects.count() == 1


def test_release_more_than_reserved_is_refused(db):
    organization = OrganizationFactory()
    credits_grant(organization=organization, amount=10)
    with pytest.raises(ValueError), transaction.atomic():
        credits_release(account=credit_account_lock(organization_id=organization.pk), amount=1)


def test_database_refuses_reserved_above_balance_and_negative_values(db):
    organization = OrganizationFactory()
    credits_grant(organization=organization, amount=10)
    account = CreditAccount.objects.filter(organization=organization)
    for change in ({"reserved": 11}, {"reserved": -1}, {"balance": -1}):
        with pytest.raises(IntegrityError), transaction.atomic():
            account.update(**change)


def test_ledger_entries_are_append_only(db):
    organization = OrganizationFactory()
    entry = credits_grant(organization=organization, amount=10)

    with pytest.raises(ValueError):
        entry.save()
    with pytest.raises(ValueError):
        entry.delete()


def test_balance_endpoint_reports_balance_reserved_available_and_costs(tenant):
    with transaction.atomic():
        credits_reserve(
            account=credit_account_lock(organization_id=tenant.organization.pk), amount=40
        )

    body = tenant.client.get("/api/v1/operations/credits/balance").json()

    assert body == {
        "organizationId": str(tenant.organization.pk),
        "balance": 1000,
        "reserved": 40,
        "available": 960,
        "costs": {"emails": 1, "phones": 10},
    }


def test_balance_of_an_organization_without_account_is_zero(make_tenant):
    body = make_tenant().client.get("/api/v1/operations/credits/balance").json()
    assert (body["balance"], body["reserved"], body["available"]) == (0, 0, 0)


def test_history_is_newest_first_with_count_limit_offset_and_dates(tenant, make_tenant):
    for amount in (5, 6, 7):
        credits_grant(organization=tenant.organization, amount=amount)
    credits_grant(organization=make_tenant().organization, amount=99)
    url = "/api/v1/operations/credits/history"

    body = tenant.client.get(url).json()
    assert body["count"] == 4
    assert [t["amount"] for t in body["transactions"]] == [7, 6, 5, 1000]
    first = body["transactions"][0]
    assert set(first) == {
        "id", "organizationId", "amount", "kind", "operation", "referenceId", "balanceAfter",
        "memo", "createdAt",
    }  # fmt: skip
    assert first["balanceAfter"] == 1018

    page = tenant.client.get(f"{url}?limit=2&offset=1").json()
    assert page["count"] == 4 and [t["amount"] for t in page["transactions"]] == [6, 5]

    future = (timezone.now() + timezone.timedelta(days=1)).isoformat()
    assert tenant.client.get(url, {"startDate": future}).json() == {"transactions": [], "count": 0}
    assert tenant.client.get(url, {"endDate": future}).json()["count"] == 4


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": "ten"},
        {"offset": -1},
        {"startDate": "yesterday"},
        {"startDate": "2026-02-01T00:00:00Z", "endDate": "2026-01-01T00:00:00Z"},
    ],
)
def test_history_rejects_invalid_parameters(tenant, query):
    response = tenant.client.get("/api/v1/operations/credits/history", query)
    assert_error(response, 400, "VALIDATION_ERROR")

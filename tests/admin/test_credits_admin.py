from collections.abc import Callable

from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client
from django.urls import reverse

from credits.admin import LEDGER_INLINE_ROWS
from credits.models import CreditAccount, CreditTransaction
from credits.services import credits_grant
from tests.admin.conftest import finish_with_data, request_enrichments
from tests.conftest import Tenant
from tests.factories import OrganizationFactory


def account_url(tenant: Tenant, view: str = "change") -> str:
    return reverse(f"admin:credits_creditaccount_{view}", args=[tenant.organization.pk])


def test_balance_and_reserved_are_shown_but_not_editable(
    admin_client: Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant(credits=40)
    request_enrichments(tenant, 3)

    page = admin_client.get(account_url(tenant)).content.decode()
    response = admin_client.post(account_url(tenant), {"balance": 10**6, "reserved": 0})

    assert 'name="balance"' not in page
    assert 'name="reserved"' not in page
    assert response.status_code == 403
    account = CreditAccount.objects.get()
    assert (account.balance, account.reserved, account.available) == (40, 3, 37)
    assert admin_client.get(reverse("admin:credits_creditaccount_add")).status_code == 403
    assert admin_client.get(account_url(tenant, "delete")).status_code == 403


def test_grant_form_writes_one_ledger_entry_with_the_staff_actor_and_moves_the_balance(
    admin_client: Client, admin_user: AbstractBaseUser, make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant(credits=10)
    request_enrichments(tenant, 2)
    before = CreditTransaction.objects.count()

    response = admin_client.post(
        account_url(tenant, "grant"), {"amount": 25, "memo": "Goodwill for ticket 42"}
    )

    assert response["Location"] == account_url(tenant)
    assert CreditTransaction.objects.count() == before + 1
    entry = CreditTransaction.objects.first()
    assert (entry.kind, entry.amount, entry.balance_after) == ("grant", 25, 35)
    assert (entry.actor, entry.memo) == (admin_user, "Goodwill for ticket 42")
    account = CreditAccount.objects.get()
    assert (account.balance, account.reserved) == (35, 2)
    assert LogEntry.objects.filter(object_id=str(account.pk), user=admin_user).exists()
    page = admin_client.get(response["Location"]).content.decode()
    assert "Goodwill for ticket 42" in page
    assert "the balance is now 35" in page


def test_negative_amount_is_an_adjustment_of_available_credits(
    admin_client: Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant(credits=10)

    admin_client.post(account_url(tenant, "grant"), {"amount": -4, "memo": "Duplicate grant"})

    entry = CreditTransaction.objects.first()
    assert (entry.kind, entry.amount) == ("adjustment", -4)
    assert CreditAccount.objects.get().balance == 6


def test_grant_refusals_are_form_errors_and_write_nothing(
    admin_client: Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant(credits=10)
    request_enrichments(tenant, 4)
    before = CreditTransaction.objects.count()

    zero = admin_client.post(account_url(tenant, "grant"), {"amount": 0, "memo": "nothing"})
    too_much = admin_client.post(account_url(tenant, "grant"), {"amount": -7, "memo": "too much"})
    no_memo = admin_client.post(account_url(tenant, "grant"), {"amount": 5, "memo": ""})
    typo = admin_client.post(account_url(tenant, "grant"), {"amount": 10**10, "memo": "oops"})

    assert zero.status_code == 200
    assert "The amount must not be zero." in zero.content.decode()
    assert too_much.status_code == 200
    assert "needs 7 credits but only 6 are available" in too_much.content.decode()
    assert no_memo.status_code == 200
    assert "This field is required." in no_memo.content.decode()
    assert "less than or equal to 1000000000" in typo.content.decode()
    assert CreditTransaction.objects.count() == before
    account = CreditAccount.objects.get()
    assert (account.balance, account.reserved) == (10, 4)


def test_grant_to_an_organization_without_an_account_opens_one(admin_client: Client) -> None:
    organization = OrganizationFactory()
    url = reverse("admin:credits_creditaccount_grant", args=[organization.pk])

    assert "has no credits yet" in admin_client.get(url).content.decode()
    admin_client.post(url, {"amount": 3, "memo": "Trial"})

    assert CreditAccount.objects.get(organization=organization).balance == 3


def test_ledger_is_read_only(admin_client: Client, make_tenant: Callable[..., Tenant]) -> None:
    make_tenant(credits=10)
    entry = CreditTransaction.objects.get()
    change = reverse("admin:credits_credittransaction_change", args=[entry.pk])

    assert admin_client.get(reverse("admin:credits_credittransaction_add")).status_code == 403
    assert admin_client.post(change, {"amount": 1000, "memo": "edited"}).status_code == 403
    delete = reverse("admin:credits_credittransaction_delete", args=[entry.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    changelist = reverse("admin:credits_credittransaction_changelist")
    assert 'value="delete_selected"' not in admin_client.get(changelist).content.decode()
    entry.refresh_from_db()
    assert (entry.amount, entry.memo) == (10, "test grant")


def test_account_page_shows_the_newest_ledger_entries_first(
    admin_client: Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant = make_tenant()
    for number in range(LEDGER_INLINE_ROWS + 2):
        credits_grant(organization=tenant.organization, amount=1, memo=f"grant #{number:03d}")

    page = admin_client.get(account_url(tenant)).content.decode()

    newest, oldest_shown = f"grant #{LEDGER_INLINE_ROWS + 1:03d}", "grant #002"
    assert newest in page
    assert oldest_shown in page
    assert page.index(newest) < page.index(oldest_shown)
    assert "grant #001" not in page
    assert f"?account__organization__id__exact={tenant.organization.pk}" in page


def test_ledger_list_filters_searches_by_reference_and_links_charges_to_enrichments(
    admin_client: Client, make_tenant: Callable[..., Tenant]
) -> None:
    tenant, other = make_tenant(credits=20), make_tenant(credits=30)
    first, second = request_enrichments(tenant, 2)
    finish_with_data(first)
    finish_with_data(second)
    charge = CreditTransaction.objects.get(reference_id=first.pk)
    changelist = reverse("admin:credits_credittransaction_changelist")

    def shown(**params: str) -> str:
        response = admin_client.get(changelist, params)
        assert response.status_code == 200
        return response.content.decode()

    by_reference = shown(q=str(first.pk))
    assert reverse("admin:enrichment_enrichment_change", args=[first.pk]) in by_reference
    assert str(second.pk) not in by_reference
    assert str(charge.pk) in shown(q=str(first.pk).upper())
    charges = shown(kind__exact="charge")
    assert "test grant" not in charges
    assert str(first.pk) in charges
    assert str(second.pk) in shown(operation="enrichment.emails")
    only_other = shown(**{"account__organization__id__exact": str(other.organization.pk)})
    assert str(first.pk) not in only_other
    assert "test grant" in only_other
    midnight = charge.created_at.replace(hour=0, minute=0, second=0, microsecond=0)
    assert "test grant" in shown(**{"created_at__gte": str(midnight)})
    enrichment_page = admin_client.get(
        reverse("admin:enrichment_enrichment_change", args=[first.pk])
    ).content.decode()
    assert reverse("admin:credits_credittransaction_change", args=[charge.pk]) in enrichment_page

from collections.abc import Callable

from django.db import connection
from django.test import Client
from django.urls import reverse

from credits.models import CreditAccount, CreditTransaction
from enrichment.ledger_check import ledger_check
from enrichment.models import Enrichment, Status
from tests.admin.conftest import Mix, finish_with_data, request_enrichments
from tests.conftest import Tenant
from tests.factories import OrganizationFactory


def test_ledger_checks_out_after_grants_reservations_charges_and_releases(mix: Mix) -> None:
    check = ledger_check(mix.tenant.organization.pk)

    assert check.ok, check.problems
    assert (check.balance, check.reserved) == (99, 3)
    assert (check.ledger_total, check.pending_total) == (99, 3)


def test_an_organization_without_an_account_checks_out(db: None) -> None:
    assert ledger_check(OrganizationFactory().pk).ok


def test_balance_out_of_step_with_the_ledger_is_reported(mix: Mix) -> None:
    CreditAccount.objects.filter(pk=mix.tenant.organization.pk).update(balance=120)

    check = ledger_check(mix.tenant.organization.pk)

    assert not check.ok
    assert check.problems == ["balance is 120 but the ledger entries sum to 99"]


def test_reservation_out_of_step_with_pending_enrichments_is_reported(mix: Mix) -> None:
    Enrichment.objects.filter(pk=mix.fresh.pk).update(status=Status.FAILED, data_found=False)

    check = ledger_check(mix.tenant.organization.pk)

    assert check.problems == [
        "reserved is 3 but the pending enrichments' prices sum to 2",
    ]


def test_a_second_charge_of_one_enrichment_is_reported(mix: Mix) -> None:
    # The database refuses a second charge; the check must still see one should it get in.
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX one_charge_per_reference")
    charge = CreditTransaction.objects.get(reference_id=mix.finished.pk)
    CreditTransaction.objects.bulk_create(
        [
            CreditTransaction(
                account_id=charge.account_id,
                amount=-1,
                kind=CreditTransaction.Kind.CHARGE,
                reference_id=mix.finished.pk,
                balance_after=charge.balance_after - 1,
            )
        ]
    )
    CreditAccount.objects.filter(pk=charge.account_id).update(balance=98)

    problems = ledger_check(mix.tenant.organization.pk).problems

    assert problems[0] == f"enrichments charged more than once: {mix.finished.pk}"
    assert problems[1].startswith("charges their enrichment does not record: ledger entries ")


def test_enrichment_recording_another_charge_is_reported(
    make_tenant: Callable[..., Tenant],
) -> None:
    tenant = make_tenant(credits=10)
    first, second = (finish_with_data(e) for e in request_enrichments(tenant, 2))
    Enrichment.objects.filter(pk=first.pk).update(credit_transaction=None, credits_charged=0)
    Enrichment.objects.filter(pk=second.pk).update(
        credit_transaction=CreditTransaction.objects.get(reference_id=first.pk)
    )

    problems = ledger_check(tenant.organization.pk).problems

    assert problems == [
        f"enrichments whose recorded charge is not theirs or not their price: {second.pk}",
        "charges their enrichment does not record: ledger entries "
        + ", ".join(
            str(pk)
            for pk in CreditTransaction.objects.filter(kind="charge")
            .order_by("-created_at", "-id")
            .values_list("pk", flat=True)
        ),
        f"enrichments that found data but were not charged: {first.pk}",
    ]


def test_a_charge_whose_enrichment_was_deleted_is_fine(make_tenant: Callable[..., Tenant]) -> None:
    tenant = make_tenant(credits=10)
    enrichment = finish_with_data(request_enrichments(tenant, 1)[0])
    enrichment.person.delete()

    assert ledger_check(tenant.organization.pk).ok


def test_check_ledger_view_and_action_report_in_messages(
    admin_client: Client, mix: Mix, make_tenant: Callable[..., Tenant]
) -> None:
    broken = make_tenant(credits=5)
    CreditAccount.objects.filter(pk=broken.organization.pk).update(reserved=2)
    view = reverse("admin:credits_creditaccount_check_ledger", args=[mix.tenant.organization.pk])

    ok = admin_client.get(view, follow=True).content.decode()
    action = admin_client.post(
        reverse("admin:credits_creditaccount_changelist"),
        {
            "action": "check_ledger",
            "_selected_action": [mix.tenant.organization.pk, broken.organization.pk],
        },
        follow=True,
    ).content.decode()

    assert f"{mix.tenant.organization}: the ledger checks out" in ok
    assert f"{mix.tenant.organization}: the ledger checks out" in action
    assert (
        f"{broken.organization}: reserved is 2 but the pending enrichments&#x27; prices sum to 0."
        in action
    )

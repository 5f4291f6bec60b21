import pytest
from django.core.management.base import CommandError

from credits.models import CreditAccount, CreditTransaction
from credits.selectors import credit_account_get
from organizations.models import Organization
from tests.commands import run_command, run_json
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db


def _ledger(organization: Organization) -> list[tuple[str, int, str]]:
    return list(
        CreditTransaction.objects.filter(account_id=organization.pk)
        .order_by("id")
        .values_list("kind", "amount", "memo")
    )


def test_create_organization_grants_the_initial_credits_through_the_ledger() -> None:
    out = run_json("create_organization", "Acme", "--credits", "250")

    organization = Organization.objects.get(name="Acme")
    assert out == {"id": str(organization.pk), "name": "Acme", "credits": 250}
    assert credit_account_get(organization=organization).balance == 250
    assert _ledger(organization) == [("grant", 250, "initial credits")]


def test_create_organization_without_credits_writes_no_ledger_entry() -> None:
    out = run_command("create_organization", "Bare")

    organization = Organization.objects.get(name="Bare")
    assert f"Created organization 'Bare' (id {organization.pk}) with 0 credits." in out
    assert _ledger(organization) == []


def test_create_organization_refuses_a_duplicate_name() -> None:
    organization = OrganizationFactory(name="Acme")

    with pytest.raises(CommandError, match="already exists"):
        run_command("create_organization", "Acme", "--credits", "10")

    assert Organization.objects.get() == organization
    assert not CreditTransaction.objects.exists()


@pytest.mark.parametrize(
    "args",
    [["Acme", "--credits", "ten"], ["Acme", "--credits", "-5"], ["   "], ["x" * 201], []],
)
def test_create_organization_refuses_bad_input_without_changes(args: list[str]) -> None:
    with pytest.raises(CommandError):
        run_command("create_organization", *args)

    assert not Organization.objects.exists()
    assert not CreditTransaction.objects.exists()


@pytest.mark.parametrize("by", ["name", "id"])
def test_grant_credits_adds_a_ledger_entry(by: str) -> None:
    organization = OrganizationFactory(name="Acme")
    run_command("grant_credits", "Acme", "100")

    ref = organization.name if by == "name" else str(organization.pk)
    out = run_json("grant_credits", ref, "40", "--memo", "promo")

    entry = CreditTransaction.objects.get(memo="promo")
    assert out == {
        "organizationId": str(organization.pk),
        "amount": 40,
        "balance": 140,
        "transactionId": entry.pk,
    }
    assert credit_account_get(organization=organization).balance == 140
    assert _ledger(organization) == [("grant", 100, ""), ("grant", 40, "promo")]


def test_grant_credits_with_a_negative_amount_is_an_adjustment() -> None:
    organization = OrganizationFactory(name="Acme")
    run_command("grant_credits", "Acme", "100")

    out = run_command("grant_credits", "Acme", "-30", "--memo", "refund correction")

    assert "Removed 30 credits from 'Acme'" in out
    assert "balance is now 70" in out
    assert _ledger(organization)[-1] == ("adjustment", -30, "refund correction")


def test_grant_credits_refuses_to_make_available_credits_negative() -> None:
    organization = OrganizationFactory(name="Acme")
    run_command("grant_credits", "Acme", "100")
    # 80 of the 100 are held by pending enrichments, so only 20 can be removed.
    CreditAccount.objects.filter(pk=organization.pk).update(reserved=80)

    with pytest.raises(CommandError, match="only 20 are available"):
        run_command("grant_credits", "Acme", "-21")

    account = credit_account_get(organization=organization)
    assert (account.balance, account.reserved) == (100, 80)
    assert len(_ledger(organization)) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Acme", "ten"], "not a whole number"),
        (["Acme", "1.5"], "not a whole number"),
        (["Acme", "0"], "must not be zero"),
        (["No Such Org", "10"], "No organization"),
        (["00000000-0000-4000-8000-000000000000", "10"], "No organization"),
        (["Acme"], "required"),
    ],
)
def test_grant_credits_refuses_bad_input_without_changes(args: list[str], message: str) -> None:
    OrganizationFactory(name="Acme")

    with pytest.raises(CommandError, match=message):
        run_command("grant_credits", *args)

    assert not CreditTransaction.objects.exists()

"""`check_ledger`: exit status 0 when the SPEC's invariants hold; each broken one is reported with
the offending rows and exit status 1. The database's constraints refuse most breakages, so some
tests drop a constraint first (inside the test's transaction, rolled back after it)."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import F

from credits.models import CreditAccount, CreditTransaction
from enrichment.models import Enrichment, Status
from tests.admin.conftest import end, finish_with_data, request_enrichments
from tests.conftest import Tenant

pytestmark = pytest.mark.django_db


@dataclass
class Books:
    """A tenant with one enrichment charged, one released and one pending: balance 99, reserved
    1."""

    tenant: Tenant
    charged: Enrichment
    released: Enrichment
    pending: Enrichment


@pytest.fixture
def books(make_tenant: Callable[..., Tenant]) -> Books:
    tenant = make_tenant(credits=100)
    charged, released, pending = request_enrichments(tenant, 3)
    return Books(
        tenant=tenant,
        charged=finish_with_data(charged),
        released=end(released, Status.FAILED),
        pending=pending,
    )


def check_ledger(*args: str) -> tuple[str, CommandError | None]:
    """The command's stdout, and the error it ended with (None when it exited 0)."""
    stdout = StringIO()
    try:
        call_command("check_ledger", *args, stdout=stdout, stderr=StringIO())
    except CommandError as error:
        return stdout.getvalue(), error
    return stdout.getvalue(), None


def drop_constraint(table: str, name: str) -> None:
    with connection.cursor() as cursor:
        # The test's rows left deferred foreign-key checks queued, and ALTER TABLE refuses those.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')


def test_healthy_organizations_check_out(books: Books, make_tenant: Callable[..., Tenant]) -> None:
    make_tenant()  # an organization without any credits or enrichments checks out too

    summary, error = check_ledger()
    one, one_error = check_ledger("--org", books.tenant.organization.name, "--json")

    assert error is None and one_error is None
    assert "2 of 2 organization(s) check out." in summary
    assert json.loads(one) == {
        "ok": True,
        "organizations": [
            {
                "organizationId": str(books.tenant.organization.pk),
                "name": books.tenant.organization.name,
                "ok": True,
                "balance": 99,
                "reserved": 1,
                "ledgerTotal": 99,
                "pendingTotal": 1,
                "problems": [],
            }
        ],
    }


def balance_off_the_ledger(books: Books) -> str:
    CreditAccount.objects.filter(pk=books.tenant.organization.pk).update(balance=F("balance") + 7)
    return "balance is 106 but the ledger entries sum to 99"


def reserved_above_the_balance(books: Books) -> str:
    drop_constraint("credits_creditaccount", "credit_reserved_within_balance")
    CreditAccount.objects.filter(pk=books.tenant.organization.pk).update(reserved=100)
    return "reserved is 100, outside 0..99 (the balance)"


def reserved_negative(books: Books) -> str:
    drop_constraint("credits_creditaccount", "credit_reserved_non_negative")
    CreditAccount.objects.filter(pk=books.tenant.organization.pk).update(reserved=-1)
    return "reserved is -1, outside 0..99 (the balance)"


def pending_ended_without_release(books: Books) -> str:
    Enrichment.objects.filter(pk=books.pending.pk).update(status=Status.FAILED, data_found=False)
    return "reserved is 1 but the pending enrichments' prices sum to 0"


def charged_twice(books: Books) -> str:
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX one_charge_per_reference")
    account = CreditAccount.objects.get(pk=books.tenant.organization.pk)
    CreditTransaction.objects.create(
        account=account,
        amount=-1,
        kind=CreditTransaction.Kind.CHARGE,
        reference_id=books.charged.pk,
        balance_after=account.balance - 1,
    )
    CreditAccount.objects.filter(pk=account.pk).update(balance=F("balance") - 1)
    return f"enrichments charged more than once: {books.charged.pk}"


def charged_without_data(books: Books) -> str:
    drop_constraint("enrichment_enrichment", "charged_only_when_finished_with_data")
    Enrichment.objects.filter(pk=books.charged.pk).update(status=Status.FAILED, data_found=False)
    return f"charged enrichments not finished with data: {books.charged.pk}"


def found_data_for_free(books: Books) -> str:
    Enrichment.objects.filter(pk=books.released.pk).update(
        status=Status.FINISHED, data_found=True, data=[{"value": "a@b.example", "type": "work"}]
    )
    return f"enrichments that found data but were not charged: {books.released.pk}"


@pytest.mark.parametrize(
    "breakage",
    [
        balance_off_the_ledger,
        reserved_above_the_balance,
        reserved_negative,
        pending_ended_without_release,
        charged_twice,
        charged_without_data,
        found_data_for_free,
    ],
)
def test_each_broken_invariant_is_reported_with_exit_status_1(
    books: Books, make_tenant: Callable[..., Tenant], breakage: Callable[[Books], str]
) -> None:
    healthy = make_tenant(credits=5)
    problem = breakage(books)
    broken_id = str(books.tenant.organization.pk)

    summary, error = check_ledger()
    report, json_error = check_ledger("--org", broken_id, "--json")
    _, healthy_error = check_ledger("--org", str(healthy.organization.pk))

    assert error is not None and json_error is not None and healthy_error is None
    assert error.returncode == 1
    assert str(error) == f"The ledger does not check out for 1 organization(s): {broken_id}"
    assert f"(id {broken_id}): FAILED" in summary and f"  - {problem}" in summary
    assert "1 of 2 organization(s) check out." in summary
    [organization] = json.loads(report)["organizations"]
    assert organization["ok"] is False and problem in organization["problems"]


def test_an_unknown_organization_is_an_error(db: None) -> None:
    with pytest.raises(CommandError, match="No organization with id or name 'nobody'"):
        call_command("check_ledger", "--org", "nobody", stdout=StringIO())

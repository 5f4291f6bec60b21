"""All money moves here: each change holds the organization's credit row lock, and every change of
`balance` writes a ledger entry in the same transaction.

`credits_reserve`, `credits_release` and `credits_charge` work on an account the caller has locked
with `credit_account_lock` inside its own transaction, so a batch or a settlement moves money and
changes enrichment rows atomically; `credits_grant` is an entry point of its own.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from credits.models import CreditAccount, CreditTransaction
from enrichment_project.errors import ErrorCode, ServiceError, ValidationFailed
from enrichment_project.metrics import (
    CREDITS_CHARGED,
    CREDITS_RELEASED,
    CREDITS_RESERVED,
    count_on_commit,
)
from organizations.models import Organization


class InsufficientCredits(ServiceError):
    status_code = 402
    code = ErrorCode.INSUFFICIENT_CREDITS

    def __init__(self, *, required: int, available: int) -> None:
        super().__init__(
            f"This request needs {required} credits but only {available} are available.",
            {"required": required, "available": available},
        )


@dataclass(frozen=True)
class Charge:
    amount: int
    operation: str
    reference_id: uuid.UUID


def credit_account_lock(*, organization_id: uuid.UUID) -> CreditAccount:
    """The organization's account, locked until the caller's transaction ends.

    FOR NO KEY UPDATE: it serializes every money change of the organization while still letting
    other transactions insert rows that reference the account (ledger entries, enrichments)."""
    account = (
        CreditAccount.objects.select_for_update(no_key=True)
        .filter(organization_id=organization_id)
        .first()
    )
    if account is None:
        CreditAccount.objects.bulk_create(
            [CreditAccount(organization_id=organization_id)], ignore_conflicts=True
        )
        account = CreditAccount.objects.select_for_update(no_key=True).get(
            organization_id=organization_id
        )
    return account


def credits_reserve(*, account: CreditAccount, amount: int) -> None:
    if amount < 0:
        raise ValueError("A reservation cannot be negative.")
    if amount > account.available:
        raise InsufficientCredits(required=amount, available=account.available)
    if amount:
        _apply(account, reserved_delta=amount)
        count_on_commit(CREDITS_RESERVED, amount)


def credits_release(*, account: CreditAccount, amount: int) -> None:
    if amount < 0 or amount > account.reserved:
        raise ValueError(f"Cannot release {amount} of {account.reserved} reserved credits.")
    if amount:
        _apply(account, reserved_delta=-amount)
        count_on_commit(CREDITS_RELEASED, amount)


def credits_charge(*, account: CreditAccount, charges: Sequence[Charge]) -> list[CreditTransaction]:
    """Turns reserved credits into charges: one ledger entry each, written together. The ledger's
    unique constraint refuses a second charge of the same reference whatever the caller does."""
    total = sum(charge.amount for charge in charges)
    if any(charge.amount <= 0 for charge in charges) or total > account.reserved:
        raise ValueError(f"Cannot charge {total} of {account.reserved} reserved credits.")
    balance = account.balance
    entries = []
    for charge in charges:
        balance -= charge.amount
        entries.append(
            CreditTransaction(
                account=account,
                amount=-charge.amount,
                kind=CreditTransaction.Kind.CHARGE,
                operation=charge.operation,
                reference_id=charge.reference_id,
                balance_after=balance,
            )
        )
    CreditTransaction.objects.bulk_create(entries)
    _apply(account, balance_delta=-total, reserved_delta=-total)
    count_on_commit(CREDITS_CHARGED, total)
    return entries


def credits_grant(
    *,
    organization: Organization,
    amount: int,
    memo: str = "",
    actor: AbstractBaseUser | None = None,
) -> CreditTransaction:
    """Adds credits (a grant) or corrects them (a negative adjustment) through the ledger."""
    if amount == 0:
        raise ValidationFailed("The amount must not be zero.")
    kind = CreditTransaction.Kind.GRANT if amount > 0 else CreditTransaction.Kind.ADJUSTMENT
    with transaction.atomic(durable=True):
        account = credit_account_lock(organization_id=organization.pk)
        if account.available + amount < 0:
            raise InsufficientCredits(required=-amount, available=account.available)
        entry = CreditTransaction.objects.create(
            account=account,
            amount=amount,
            kind=kind,
            operation="manual" if actor else "",
            balance_after=account.balance + amount,
            memo=memo[:500],
            actor=actor,
        )
        _apply(account, balance_delta=amount)
    return entry


def _apply(account: CreditAccount, *, balance_delta: int = 0, reserved_delta: int = 0) -> None:
    CreditAccount.objects.filter(pk=account.pk).update(
        balance=F("balance") + balance_delta,
        reserved=F("reserved") + reserved_delta,
        updated_at=timezone.now(),
    )
    account.balance += balance_delta
    account.reserved += reserved_delta

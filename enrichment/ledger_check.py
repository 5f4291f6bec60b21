"""The SPEC's credit invariants for one organization, checked against its rows as they are.

It lives in the enrichment app because two of the invariants are about enrichments, and credits
imports nothing from here."""

import uuid
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Sum
from django.db.models.functions import Coalesce

from credits.models import CreditAccount, CreditTransaction
from enrichment.models import Enrichment, Status

# Ids named in one problem; the rest are counted.
SHOWN_IDS = 5


@dataclass(frozen=True)
class LedgerCheck:
    organization_id: uuid.UUID
    balance: int
    reserved: int
    ledger_total: int
    pending_total: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def ledger_check(organization_id: uuid.UUID) -> LedgerCheck:
    """`balance == sum(ledger amounts)`, `0 <= reserved <= balance`,
    `reserved == sum(price of pending enrichments)`, at most one charge per enrichment, each
    charged enrichment records the charge of its own id and price, and an enrichment is charged
    exactly when it finished with data (a database constraint refuses the first half; the check
    must still see a row that got past it)."""
    with transaction.atomic():
        # Every change of this organization's money holds this row lock: taking it makes the
        # figures below one consistent state even while workers run. It is held for a few reads.
        account = (
            CreditAccount.objects.select_for_update(no_key=True)
            .filter(organization_id=organization_id)
            .first()
        )
        ledger = CreditTransaction.objects.filter(account_id=organization_id)
        ledger_total = ledger.aggregate(total=Coalesce(Sum("amount"), 0))["total"]
        enrichments = Enrichment.objects.filter(organization_id=organization_id)
        pending_total = enrichments.filter(status=Status.PENDING).aggregate(
            total=Coalesce(Sum("price"), 0)
        )["total"]
        charged_twice = list(
            ledger.filter(kind=CreditTransaction.Kind.CHARGE)
            .values("reference_id")
            .annotate(charges=Count("pk"))
            .filter(charges__gt=1)
            .values_list("reference_id", flat=True)
        )
        wrong_charge = list(
            enrichments.filter(credit_transaction__isnull=False)
            .exclude(
                credit_transaction__account_id=organization_id,
                credit_transaction__reference_id=F("pk"),
                credit_transaction__amount=-F("credits_charged"),
            )
            .values_list("pk", flat=True)
        )
        # A charge whose enrichment was deleted (with its person) is fine: the ledger outlives it.
        unrecorded_charge = list(
            ledger.filter(kind=CreditTransaction.Kind.CHARGE)
            .filter(
                Exists(
                    Enrichment.objects.filter(pk=OuterRef("reference_id")).exclude(
                        credit_transaction=OuterRef("pk")
                    )
                )
            )
            .values_list("pk", flat=True)
        )
        charged_without_data = list(
            enrichments.filter(Q(credit_transaction__isnull=False) | Q(credits_charged__gt=0))
            .filter(
                ~Q(status=Status.FINISHED) | ~Q(data_found=True) | Q(data__isnull=True) | Q(data=[])
            )
            .values_list("pk", flat=True)
        )
        found_but_free = list(
            enrichments.filter(
                status=Status.FINISHED,
                data_found=True,
                price__gt=0,
                credit_transaction__isnull=True,
            ).values_list("pk", flat=True)
        )
    balance, reserved = (account.balance, account.reserved) if account else (0, 0)
    problems = []
    if balance != ledger_total:
        problems.append(f"balance is {balance} but the ledger entries sum to {ledger_total}")
    if not 0 <= reserved <= balance:
        problems.append(f"reserved is {reserved}, outside 0..{balance} (the balance)")
    if reserved != pending_total:
        problems.append(
            f"reserved is {reserved} but the pending enrichments' prices sum to {pending_total}"
        )
    if charged_twice:
        problems.append(f"enrichments charged more than once: {_ids(charged_twice)}")
    if wrong_charge:
        problems.append(
            f"enrichments whose recorded charge is not theirs or not their price: "
            f"{_ids(wrong_charge)}"
        )
    if unrecorded_charge:
        problems.append(
            f"charges their enrichment does not record: ledger entries {_ids(unrecorded_charge)}"
        )
    if charged_without_data:
        problems.append(f"charged enrichments not finished with data: {_ids(charged_without_data)}")
    if found_but_free:
        problems.append(f"enrichments that found data but were not charged: {_ids(found_but_free)}")
    return LedgerCheck(
        organization_id=organization_id,
        balance=balance,
        reserved=reserved,
        ledger_total=ledger_total,
        pending_total=pending_total,
        problems=problems,
    )


def _ids(ids: list) -> str:
    shown = ", ".join(str(pk) for pk in ids[:SHOWN_IDS])
    return shown if len(ids) <= SHOWN_IDS else f"{shown} and {len(ids) - SHOWN_IDS} more"

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from organizations.models import Organization


class CreditAccount(models.Model):
    """An organization's balance. Written only by credits.services, under this row's lock."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, primary_key=True, related_name="credit_account"
    )
    balance = models.BigIntegerField(default=0)
    reserved = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(reserved__gte=0), name="credit_reserved_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(reserved__lte=F("balance")), name="credit_reserved_within_balance"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization}: {self.balance} ({self.reserved} reserved)"

    @property
    def available(self) -> int:
        return self.balance - self.reserved


class CreditTransaction(models.Model):
    """Append-only ledger entry. `reference_id` names what a charge paid for (an enrichment id)
    without a foreign key, so money never depends on the enrichment app and outlives deletions."""

    class Kind(models.TextChoices):
        GRANT = "grant"
        CHARGE = "charge"
        ADJUSTMENT = "adjustment"
        REFUND = "refund"

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="ledger")
    amount = models.BigIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    operation = models.CharField(max_length=64, blank=True)
    reference_id = models.UUIDField(null=True, blank=True)
    balance_after = models.BigIntegerField()
    memo = models.CharField(max_length=500, blank=True)
    # PROTECT: clearing the actor of a deleted user would rewrite an append-only entry.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at", "-id"], name="ledger_account_time")
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["reference_id"],
                condition=Q(kind="charge"),
                name="one_charge_per_reference",
            ),
            models.CheckConstraint(
                condition=~Q(kind="charge") | (Q(amount__lt=0) & Q(reference_id__isnull=False)),
                name="charge_is_negative_with_reference",
            ),
            models.CheckConstraint(
                condition=Q(balance_after__gte=0), name="ledger_balance_after_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+d} ({self.created_at:%Y-%m-%d %H:%M})"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("Ledger entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValueError("Ledger entries are append-only.")

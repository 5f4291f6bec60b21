from datetime import datetime

from django.db.models import QuerySet

from credits.models import CreditAccount, CreditTransaction
from organizations.models import Organization


def credit_account_get(*, organization: Organization) -> CreditAccount:
    """The account as last committed; an organization that never had credits reads as zero."""
    account = CreditAccount.objects.filter(organization=organization).first()
    return account or CreditAccount(organization=organization)


def credit_history(
    *, organization: Organization, start: datetime | None, end: datetime | None
) -> QuerySet[CreditTransaction]:
    entries = CreditTransaction.objects.filter(account_id=organization.pk)
    if start:
        entries = entries.filter(created_at__gte=start)
    if end:
        entries = entries.filter(created_at__lte=end)
    return entries.order_by("-created_at", "-id")

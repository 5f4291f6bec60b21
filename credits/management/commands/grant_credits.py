from typing import Any

from django.core.management.base import CommandError, CommandParser

from credits.services import InsufficientCredits, credits_grant
from enrichment_project.management import Report, ReportCommand, whole_number
from organizations.services import organization_resolve


class Command(ReportCommand):
    help = (
        "Grants credits to an organization, or removes them with a negative amount (an "
        "adjustment, refused when it would make the available credits negative)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization", metavar="ORG", help="Organization id or unique name.")
        parser.add_argument("amount", metavar="AMOUNT", type=whole_number(), help="Credits (+/-).")
        parser.add_argument("--memo", default="", help="Why; kept on the ledger entry.")

    def report(self, *, organization: str, amount: int, memo: str, **options: Any) -> Report:
        found = organization_resolve(ref=organization)
        try:
            entry = credits_grant(organization=found, amount=amount, memo=memo)
        except InsufficientCredits as error:
            raise CommandError(
                f"Cannot remove {-amount} credits from {found.name!r}: only "
                f"{error.details['available']} are available (the balance minus the credits "
                "reserved by pending enrichments)."
            ) from error
        verb = "Granted" if amount > 0 else "Removed"
        return Report(
            data={
                "organizationId": found.pk,
                "amount": amount,
                "balance": entry.balance_after,
                "transactionId": entry.pk,
            },
            summary=(
                f"{verb} {abs(amount)} credits {'to' if amount > 0 else 'from'} {found.name!r} "
                f"(id {found.pk}); balance is now {entry.balance_after} "
                f"(ledger entry {entry.pk})."
            ),
        )

from typing import Any

from django.core.management.base import CommandError, CommandParser

from enrichment.ledger_check import ledger_check
from enrichment_project.management import Report, ReportCommand
from organizations.models import Organization
from organizations.services import organization_resolve


class Command(ReportCommand):
    help = (
        "Checks the credit invariants of one organization or of every one: balance equals the "
        "ledger sum, 0 <= reserved <= balance, reserved equals the prices of pending "
        "enrichments, at most one charge per enrichment, and an enrichment is charged exactly "
        "when it finished with data. Prints the offending rows and exits with status 1 when one "
        "fails."
    )
    # Ids of the organizations whose check failed: report() finds them, handle() sets the exit
    # status from them once the report is printed.
    failing: list[str]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--org", metavar="ORG", help="Organization id or unique name (default: every one)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        super().handle(*args, **options)
        if self.failing:
            raise CommandError(
                f"The ledger does not check out for {len(self.failing)} organization(s): "
                + ", ".join(self.failing)
            )

    def report(self, *, org: str | None, **options: Any) -> Report:
        organizations = (
            [organization_resolve(ref=org)] if org else list(Organization.objects.order_by("name"))
        )
        results = [(organization, ledger_check(organization.pk)) for organization in organizations]
        self.failing = [str(organization.pk) for organization, check in results if not check.ok]
        lines = [
            f"{organization.name!r} (id {organization.pk}): "
            + (
                f"the ledger checks out (balance {check.balance}, reserved {check.reserved})."
                if check.ok
                else "\n".join(["FAILED", *(f"  - {problem}" for problem in check.problems)])
            )
            for organization, check in results
        ]
        lines.append(
            f"{len(results) - len(self.failing)} of {len(results)} organization(s) check out."
        )
        return Report(
            data={
                "ok": not self.failing,
                "organizations": [
                    {
                        "organizationId": organization.pk,
                        "name": organization.name,
                        "ok": check.ok,
                        "balance": check.balance,
                        "reserved": check.reserved,
                        "ledgerTotal": check.ledger_total,
                        "pendingTotal": check.pending_total,
                        "problems": check.problems,
                    }
                    for organization, check in results
                ],
            },
            summary="\n".join(lines),
        )

from typing import Any

from django.core.management.base import CommandParser

from credits.services import credits_grant
from enrichment_project.management import Report, ReportCommand, whole_number
from organizations.services import organization_create


class Command(ReportCommand):
    help = "Creates an organization, optionally with initial credits."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The organization's unique name.")
        parser.add_argument(
            "--credits", type=whole_number(minimum=0), default=0, help="Initial credits (0)."
        )

    def report(self, *, name: str, credits: int, **options: Any) -> Report:
        organization = organization_create(name=name)
        # credits_grant is a durable transaction of its own; it cannot fail for a positive amount.
        if credits:
            credits_grant(organization=organization, amount=credits, memo="initial credits")
        return Report(
            data={"id": organization.pk, "name": organization.name, "credits": credits},
            summary=(
                f"Created organization {organization.name!r} (id {organization.pk}) "
                f"with {credits} credits."
            ),
        )

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from enrichment_project.management import Report, ReportCommand
from organizations.models import ApiKey
from organizations.services import api_key_create, organization_resolve


class Command(ReportCommand):
    help = (
        "Creates an API key for a user of an organization (creating the user if needed) and "
        "prints it once: only its hash is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="Organization id or unique name.")
        parser.add_argument("--user", required=True, help="Username; created when missing.")
        parser.add_argument("--name", default="", help="A label for the key.")

    def report(self, *, org: str, user: str, name: str, **options: Any) -> Report:
        organization = organization_resolve(ref=org)
        _check_username(user)
        max_name = ApiKey._meta.get_field("name").max_length
        if len(name) > max_name:
            raise CommandError(f"The key name must be at most {max_name} characters.")
        issued = api_key_create(organization=organization, username=user, name=name)
        api_key = issued.api_key
        return Report(
            data={
                "key": issued.secret,
                "prefix": api_key.prefix,
                "organizationId": organization.pk,
                "user": api_key.user.get_username(),
                "name": api_key.name,
            },
            summary=(
                f"Created API key {api_key.prefix} ({api_key.name or 'unnamed'}) for user "
                f"{user!r} in {organization.name!r} (id {organization.pk}).\n"
                "The key is shown only this once (only its hash is stored):\n"
                f"{issued.secret}"
            ),
        )


def _check_username(username: str) -> None:
    """The user model's own rules (length, characters), since get_or_create would not apply them."""
    user_model = get_user_model()
    try:
        user_model._meta.get_field(user_model.USERNAME_FIELD).clean(username, None)
    except ValidationError as error:
        raise CommandError(f"Invalid username {username!r}: {' '.join(error.messages)}") from error

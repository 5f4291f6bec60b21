import json
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.core.validators import URLValidator

from credits.selectors import credit_account_get, credit_history
from credits.services import credits_grant
from enrichment.services import enrichment_price
from enrichment_project.management import Report, ReportCommand
from organizations.models import Organization
from organizations.services import api_key_create, organization_create
from persons.models import Person
from persons.services import persons_create
from providers.adapters import sandbox

DEMO_ORGANIZATION = "Demo Organization"
DEMO_CREDITS = 1000
DEMO_USER = "demo"
ADMIN_USER = "admin"
# What makes a demo person the same one on the next run.
IDENTITY_FIELDS = ("first_name", "last_name", "company_domain", "linkedin_url")
# The magic sandbox domains show every outcome a client handles; slow.example is left out because
# it holds a worker for the whole provider timeout.
DEMO_PERSONS: list[dict[str, str]] = [
    {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company_name": "Analytical Engines",
        "company_domain": sandbox.ALWAYS_FOUND,
        "title": "Sandbox: always found",
    },
    {
        "first_name": "Nora",
        "last_name": "Nobody",
        "company_name": "Ghost Works",
        "company_domain": sandbox.NEVER_FOUND,
        "title": "Sandbox: never found (no charge)",
    },
    {
        "first_name": "Flynn",
        "last_name": "Flaky",
        "company_name": "Flaky Systems",
        "company_domain": sandbox.ALWAYS_TRANSIENT,
        "title": "Sandbox: transient errors, retried, then failed",
    },
    {
        "first_name": "Ivan",
        "last_name": "Invalid",
        "company_name": "Rejected Ltd",
        "company_domain": sandbox.ALWAYS_PERMANENT,
        "title": "Sandbox: permanent error, failed at once",
    },
    {
        "first_name": "Grace",
        "last_name": "Hopper",
        "company_name": "Compilers Co",
        "company_domain": "compilers.example",
        "title": "Rear Admiral",
    },
    {
        "first_name": "Alan",
        "last_name": "Turing",
        "company_name": "Bletchley Labs",
        "company_domain": "bletchley.example",
        "title": "Cryptanalyst",
    },
    {
        "first_name": "Katherine",
        "last_name": "Johnson",
        "company_name": "Orbital Mathematics",
        "company_domain": "orbital.example",
        "title": "Mathematician",
    },
    {
        "first_name": "Edsger",
        "last_name": "Dijkstra",
        "company_name": "Shortest Path BV",
        "company_domain": "shortestpath.example",
        "title": "Professor",
    },
    {
        "first_name": "John",
        "last_name": "von Neumann",
        "company_name": "Stored Program Inc",
        "company_domain": "",
        "title": "Architect (company name only, no domain)",
    },
    {
        "first_name": "",
        "last_name": "",
        "company_name": "",
        "company_domain": "",
        "linkedin_url": "https://www.linkedin.com/in/demo-linkedin-only",
        "title": "Known by LinkedIn URL only",
    },
]


class Command(ReportCommand):
    help = (
        "Creates (or reuses) a demo organization with credits and persons, issues a new API key "
        "for it, and prints curl examples. Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="Where the API is served, for the examples (%(default)s).",
        )

    def report(self, *, base_url: str, **options: Any) -> Report:
        base_url = _checked_base_url(base_url)
        organization = Organization.objects.filter(name=DEMO_ORGANIZATION).first()
        if organization is None:
            organization = organization_create(name=DEMO_ORGANIZATION)
        # Granted while the ledger is empty rather than when the organization is created, so a run
        # interrupted between the two still ends with credits, and the next one adds none.
        granted = not credit_history(organization=organization, start=None, end=None).exists()
        if granted:
            credits_grant(organization=organization, amount=DEMO_CREDITS, memo="initial credits")
        persons = _demo_persons(organization)
        # Old keys cannot be shown again (only their hash is stored), so every run issues one.
        issued = api_key_create(organization=organization, username=DEMO_USER, name="demo")
        admin = _admin_for_first_run()
        person_ids = [str(person.pk) for person in persons]
        data: dict[str, Any] = {
            "organizationId": organization.pk,
            "key": issued.secret,
            "personIds": person_ids,
            "baseUrl": base_url,
            "admin": {"username": admin[0], "password": admin[1]} if admin else None,
        }
        balance = credit_account_get(organization=organization).balance
        lines = [
            f"Demo organization {organization.name!r} (id {organization.pk}): balance {balance} "
            + (f"(granted {DEMO_CREDITS} now)." if granted else "(credits were granted before)."),
            f"{len(persons)} demo persons; the sandbox answers by company domain: "
            f"{sandbox.ALWAYS_FOUND} always finds, {sandbox.NEVER_FOUND} never does, "
            f"{sandbox.ALWAYS_TRANSIENT} fails after retries, {sandbox.ALWAYS_PERMANENT} "
            "fails at once.",
            "",
            f"API key for user {DEMO_USER!r}, shown only this once (only its hash is stored):",
            f"  {issued.secret}",
        ]
        if admin:
            lines += [
                "",
                f"No staff user existed: created superuser {admin[0]!r} with password {admin[1]}",
                f"  (shown only this once; sign in at {base_url}/admin/ and change it).",
            ]
        lines += ["", "Try it:", *_curl_examples(base_url, issued.secret, person_ids)]
        return Report(data=data, summary="\n".join(lines))


def _checked_base_url(base_url: str) -> str:
    try:
        URLValidator(schemes=["http", "https"])(base_url)
    except ValidationError as error:
        raise CommandError(f"--base-url must be an http(s) URL, not {base_url!r}.") from error
    return base_url.rstrip("/")


def _demo_persons(organization: Organization) -> list[Person]:
    """The demo persons in DEMO_PERSONS order, reusing those a previous run created."""
    existing: dict[tuple[str, ...], Person] = {}
    for person in Person.objects.filter(
        organization=organization, last_name__in={fields["last_name"] for fields in DEMO_PERSONS}
    ).order_by("created_at", "id"):
        existing.setdefault(tuple(getattr(person, name) for name in IDENTITY_FIELDS), person)
    keys = [tuple(fields.get(name, "") for name in IDENTITY_FIELDS) for fields in DEMO_PERSONS]
    missing = [
        fields for fields, key in zip(DEMO_PERSONS, keys, strict=True) if key not in existing
    ]
    created = iter(persons_create(organization=organization, items=missing))
    return [existing[key] if key in existing else next(created) for key in keys]


def _admin_for_first_run() -> tuple[str, str] | None:
    """Creates a superuser with a random password when no staff user exists, so the admin is
    reachable on a first run; returns its username and password, else None."""
    user_model = get_user_model()
    if user_model.objects.filter(is_staff=True).exists():
        return None
    username = ADMIN_USER
    if user_model.objects.filter(username=username).exists():  # taken by a non-staff user
        username = f"{ADMIN_USER}-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username=username, email="", password=password)
    return username, password


def _curl_examples(base_url: str, key: str, person_ids: list[str]) -> list[str]:
    auth = f'-H "Authorization: Bearer {key}"'
    body = json.dumps({"personIds": person_ids, "field": "emails"})
    price = enrichment_price("emails")
    return [
        "  # Credit balance",
        f"  curl -s {auth} {base_url}/api/v1/operations/credits/balance",
        "  # The demo persons",
        f"  curl -s {auth} {base_url}/api/v1/persons",
        f"  # Enrich them all for emails ({price} credit(s) each, charged only when found)",
        f"  curl -s -X POST {auth} -H 'Content-Type: application/json' -d '{body}' "
        f"{base_url}/api/v1/operations/enrichment/batch",
        "  # Their enrichments, newest first (pending ones settle in seconds; the one at "
        f"{sandbox.ALWAYS_TRANSIENT}",
        "  # is retried for up to a minute before it fails)",
        f"  curl -s {auth} {base_url}/api/v1/enrichments",
    ]

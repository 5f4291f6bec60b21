import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import connection, transaction

from enrichment_project.errors import ValidationFailed
from organizations.models import ApiKey, Membership, Organization
from organizations.services import api_key_authenticate, hash_api_key, organization_create
from tests.commands import run_command, run_json
from tests.concurrency import run_concurrently
from tests.factories import OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db


def _tables_containing(text: str) -> list[str]:
    """Every table with a row whose text form contains `text`."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT 1 FROM {quoted} AS row WHERE row::text LIKE %s", [f"%{text}%"])
            if cursor.fetchone():
                found.append(table)
    return found


def test_create_api_key_prints_the_key_once_and_stores_only_its_hash() -> None:
    organization = OrganizationFactory(name="Acme")

    out = run_json("create_api_key", "--org", "Acme", "--user", "alice", "--name", "ci")

    assert set(out) == {"key", "prefix", "organizationId", "user", "name"}
    assert out["organizationId"] == str(organization.pk)
    assert (out["user"], out["name"]) == ("alice", "ci")
    api_key = ApiKey.objects.get(prefix=out["prefix"])
    assert api_key.key_hash == hash_api_key(out["key"])
    assert api_key.organization == organization
    assert _tables_containing(out["key"]) == []
    assert _tables_containing(out["key"].split("_", 2)[2]) == []
    user, _ = api_key_authenticate(raw_key=out["key"])
    assert user.get_username() == "alice"
    assert Membership.objects.filter(organization=organization, user=user).exists()


def test_create_api_key_summary_shows_the_key_with_a_warning() -> None:
    organization = OrganizationFactory()

    out = run_command("create_api_key", "--org", str(organization.pk), "--user", "bob")

    [key] = [line for line in out.splitlines() if line.startswith("ek_")]
    assert "only this once" in out
    assert ApiKey.objects.get().key_hash == hash_api_key(key)


def test_create_api_key_reuses_an_existing_user_and_membership() -> None:
    organization = OrganizationFactory()
    user = UserFactory(username="carol")

    first = run_json("create_api_key", "--org", str(organization.pk), "--user", "carol")
    second = run_json("create_api_key", "--org", str(organization.pk), "--user", "carol")

    assert first["key"] != second["key"]
    assert ApiKey.objects.filter(user=user).count() == 2
    assert Membership.objects.filter(user=user).count() == 1
    assert get_user_model().objects.count() == 1


@pytest.mark.parametrize("org", ["No Such Org", str(uuid.uuid4())])
def test_create_api_key_refuses_an_unknown_organization(org: str) -> None:
    OrganizationFactory()

    with pytest.raises(CommandError, match="No organization"):
        run_command("create_api_key", "--org", org, "--user", "dave")

    assert not get_user_model().objects.exists()
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--user", "erin"],  # no --org
        ["--org", "Acme", "--user", ""],
        ["--org", "Acme", "--user", "has space"],
        ["--org", "Acme", "--user", "erin", "--name", "x" * 101],
    ],
)
def test_create_api_key_refuses_bad_input_without_changes(args: list[str]) -> None:
    OrganizationFactory(name="Acme")

    with pytest.raises(CommandError):
        run_command("create_api_key", *args)

    assert not get_user_model().objects.exists()
    assert not ApiKey.objects.exists()


def test_organization_create_refuses_a_duplicate_and_leaves_the_transaction_usable() -> None:
    OrganizationFactory(name="Acme")

    with transaction.atomic():
        with pytest.raises(ValidationFailed, match="already exists"):
            organization_create(name="  Acme ")
        assert Organization.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_organization_creations_of_one_name_create_one() -> None:
    outcomes = run_concurrently([lambda: organization_create(name="Race")] * 4)

    assert sorted(type(outcome).__name__ for outcome in outcomes) == [
        "Organization",
        "ValidationFailed",
        "ValidationFailed",
        "ValidationFailed",
    ]
    assert Organization.objects.filter(name="Race").count() == 1

"""Tenants, persons and pending enrichments of the bench, with ids that pgbench scripts can
compute: a person (or enrichment) id is its index within a block and the block number, so a
pgbench client derives the ids of its next batch from `:client_id` and a counter."""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection

from credits.models import CreditAccount, CreditTransaction
from credits.services import credits_grant
from enrichment.models import Enrichment
from organizations.models import Organization
from organizations.services import api_key_create, organization_create
from persons.models import Person

# Eight decimal digits: with four zeros before them they fill the last group of a UUID.
BLOCK_BASE = 10_000_000
BATCHES_PER_CLIENT_MAX = 1000
CREDITS = 10**12


@dataclass(frozen=True)
class Tenant:
    organization: Organization
    user: AbstractBaseUser
    api_key: str


def tenant_create(name: str) -> Tenant:
    organization = organization_create(name=name)
    issued = api_key_create(organization=organization, username=f"{name}-client")
    credits_grant(organization=organization, amount=CREDITS, memo="bench")
    return Tenant(organization=organization, user=issued.api_key.user, api_key=issued.secret)


def block_of(client: int, batch: int) -> int:
    """The block of a client's batch (counted from 1), as the pgbench scripts compute it."""
    assert 1 <= batch < BATCHES_PER_CLIENT_MAX
    return BLOCK_BASE + client * BATCHES_PER_CLIENT_MAX + batch


def person_id(block: int, index: int) -> uuid.UUID:
    return uuid.UUID(f"{index:08d}-0000-4000-8000-{block:012d}")


def enrichment_id(block: int, index: int) -> uuid.UUID:
    return uuid.UUID(f"{index:08d}-0000-4000-9000-{block:012d}")


def batch_id(block: int, index: int) -> uuid.UUID:
    return uuid.UUID(f"{index:08d}-0000-4000-a000-{block:012d}")


def persons_create(tenant: Tenant, blocks: Iterable[int], size: int) -> None:
    Person.objects.bulk_create(
        (
            Person(
                id=person_id(block, index),
                organization=tenant.organization,
                first_name=f"Ada{index}",
                last_name=f"Lovelace{block}",
                company_domain="analytical-engines.com",
            )
            for block in blocks
            for index in range(size)
        ),
        batch_size=5000,
    )


def pending_enrichments_create(tenant: Tenant, blocks: Iterable[int], size: int) -> None:
    """Pending enrichments with predictable ids, their prices reserved, for the settlement
    script; the batch endpoint's own path is measured elsewhere."""
    rows = [
        Enrichment(
            id=enrichment_id(block, index),
            organization=tenant.organization,
            person_id=person_id(block, index),
            field="emails",
            price=1,
            created_by=tenant.user,
        )
        for block in blocks
        for index in range(size)
    ]
    Enrichment.objects.bulk_create(rows, batch_size=5000)
    CreditAccount.objects.filter(organization=tenant.organization).update(reserved=len(rows))


def state_reset() -> None:
    """Every measurement starts from the same state: no enrichments, shared answers or contact
    points, the charges undone and nothing reserved. Bench housekeeping, done in plain SQL
    because the ledger is append-only for the application."""
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE enrichment_enrichment, enrichment_globalenrichment, persons_contactpoint,"
            " enrichment_enrichmentbatch, enrichment_enrichmentbatchitem,"
            " webhooks_webhookevent, webhooks_webhookdelivery,"
            " enrichment_asynclookupitem, enrichment_asynclookup"
        )
        cursor.execute(
            f"DELETE FROM {CreditTransaction._meta.db_table} WHERE kind = %s",
            [CreditTransaction.Kind.CHARGE],
        )
        cursor.execute(
            f"UPDATE {CreditAccount._meta.db_table} AS account SET reserved = 0, balance ="
            f" (SELECT sum(amount) FROM {CreditTransaction._meta.db_table}"
            " WHERE account_id = account.organization_id)"
        )
        cursor.execute("VACUUM ANALYZE")

"""A stateful model of an organization's money, driven through the enrichment services in any
order: grants and adjustments, reservations, charges, releases, cancellations, worker claims,
re-queues and time-outs, and every duplicate or late settlement a re-delivered job can cause.
After each step the stored figures must equal the model's and satisfy the SPEC's invariants,
and every batch must be complete exactly when none of its enrichments is pending."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from credits.models import CreditAccount
from credits.services import InsufficientCredits, credits_grant
from enrichment.models import Enrichment, EnrichmentBatch, Field, Status
from enrichment.services import (
    enrichment_cancel,
    enrichment_complete,
    enrichment_end_unfound,
    enrichments_claim,
    enrichments_request,
    enrichments_requeue_timed_out,
)
from enrichment_project.errors import InvalidState, ValidationFailed
from organizations.models import Organization
from persons.models import Person
from providers.base import FoundValue
from tests.enrichment.conftest import assert_ledger_invariants
from tests.factories import OrganizationFactory, PersonFactory, UserFactory

PERSONS = 4


@dataclass
class Expected:
    """What the model expects of one enrichment."""

    person_id: uuid.UUID
    field: str
    price: int
    status: str = Status.PENDING
    attempts: int = 0
    claimed: bool = False


class CreditLedgerMachine(RuleBasedStateMachine):
    enrichments = Bundle("enrichments")

    def __init__(self) -> None:
        super().__init__()
        # A fresh organization per example: the examples share the test's transaction.
        self.organization: Organization = OrganizationFactory()
        self.user: AbstractBaseUser = UserFactory()
        self.persons: list[Person] = PersonFactory.create_batch(
            PERSONS, organization=self.organization
        )
        self.balance = 0
        self.expected: dict[uuid.UUID, Expected] = {}
        # The enrichment ids of each batch recorded.
        self.batches: dict[uuid.UUID, list[uuid.UUID]] = {}

    @property
    def reserved(self) -> int:
        return sum(e.price for e in self._pending().values())

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    def _pending(self) -> dict[uuid.UUID, Expected]:
        return {pk: e for pk, e in self.expected.items() if e.status == Status.PENDING}

    def _settled(self, enrichment: Enrichment, result: Enrichment | None, status: str) -> bool:
        """Checks a settlement's result against the model; True when it changed the enrichment."""
        expected = self.expected[enrichment.pk]
        if expected.status != Status.PENDING:
            assert result is None, f"{expected.status} enrichment settled again"
            return False
        assert result is not None and result.status == status
        expected.status = status
        return True

    @initialize(amount=st.integers(1, 40))
    def open_account(self, amount: int) -> None:
        credits_grant(organization=self.organization, amount=amount)
        self.balance = amount

    @rule(amount=st.integers(-30, 60))
    def grant(self, amount: int) -> None:
        if amount == 0:
            with pytest.raises(ValidationFailed):
                credits_grant(organization=self.organization, amount=amount)
        elif -amount > self.available:
            with pytest.raises(InsufficientCredits):
                credits_grant(organization=self.organization, amount=amount)
        else:
            entry = credits_grant(organization=self.organization, amount=amount)
            self.balance += amount
            assert entry.balance_after == self.balance

    @rule(
        target=enrichments,
        picks=st.lists(st.integers(0, PERSONS - 1), min_size=1, max_size=2 * PERSONS),
        field=st.sampled_from(Field.values),
    )
    def request(self, picks: list[int], field: str) -> MultipleResults[Enrichment]:
        person_ids = list(dict.fromkeys(self.persons[pick].pk for pick in picks))
        reusable = {
            e.person_id: pk
            for pk, e in self.expected.items()
            if e.field == field and e.status in (Status.PENDING, Status.FINISHED)
        }
        price = settings.ENRICHMENT_CREDIT_COSTS[field]
        required = price * sum(1 for pk in person_ids if pk not in reusable)
        request = {
            "organization": self.organization,
            "user": self.user,
            "person_ids": [self.persons[pick].pk for pick in picks],
            "field": field,
            "record_batch": True,
        }
        if required > self.available:
            with pytest.raises(InsufficientCredits) as refused:
                enrichments_request(**request)
            assert refused.value.details == {"required": required, "available": self.available}
            return multiple()
        requested = enrichments_request(**request)
        returned = requested.enrichments
        assert [e.person_id for e in returned] == person_ids
        assert requested.credits_reserved == required
        assert requested.credits_available == self.available - required
        self.batches[requested.batch.batch.pk] = [e.pk for e in returned]
        new = [e for e in returned if e.person_id not in reusable]
        assert all(e.pk == reusable[e.person_id] for e in returned if e.person_id in reusable)
        for enrichment in new:
            assert (enrichment.status, enrichment.price) == (Status.PENDING, price)
            self.expected[enrichment.pk] = Expected(enrichment.person_id, field, price)
        return multiple(*new)

    # The settling rules get the Enrichment as it was returned when it was requested: a stale
    # copy, like the one a re-delivered or duplicated job holds.
    @rule(enrichment=enrichments, found=st.booleans())
    def complete(self, enrichment: Enrichment, found: bool) -> None:
        values = (
            [FoundValue(value=f"{enrichment.pk}@example.com", type="work", quality="verified")]
            if found
            else []
        )
        result = enrichment_complete(enrichment=enrichment, values=values, provider="sandbox")
        if self._settled(enrichment, result, Status.FINISHED):
            charge = self.expected[enrichment.pk].price if found else 0
            assert result.data_found is found
            assert result.credits_charged == charge
            assert (result.credit_transaction_id is not None) is found
            self.balance -= charge

    @rule(enrichment=enrichments, status=st.sampled_from([Status.FAILED, Status.TIMEOUT]))
    def end_unfound(self, enrichment: Enrichment, status: str) -> None:
        result = enrichment_end_unfound(enrichment=enrichment, status=status, reason=status)
        self._settled(enrichment, result, status)

    @rule(enrichment=enrichments)
    def cancel(self, enrichment: Enrichment) -> None:
        if self.expected[enrichment.pk].status != Status.PENDING:
            with pytest.raises(InvalidState):
                enrichment_cancel(organization=self.organization, enrichment_id=enrichment.pk)
            return
        result = enrichment_cancel(organization=self.organization, enrichment_id=enrichment.pk)
        self._settled(enrichment, result, Status.CANCELLED)

    @rule(enrichment=enrichments)
    def claim(self, enrichment: Enrichment) -> None:
        """A worker takes the enrichment; a live claim of another job is left alone."""
        claimed = enrichments_claim(
            enrichment_ids=[str(enrichment.pk)], claim_token=uuid.uuid4().hex
        )
        expected = self.expected[enrichment.pk]
        takes_it = expected.status == Status.PENDING and not expected.claimed
        assert [e.pk for e in claimed] == ([enrichment.pk] if takes_it else [])
        if takes_it:
            expected.attempts += 1
            expected.claimed = True

    @rule(max_attempts=st.integers(1, 3), workers_died=st.booleans())
    def requeue_timed_out(self, max_attempts: int, workers_died: bool) -> None:
        """Every pending enrichment is overdue; claims expire too when their workers died."""
        now = timezone.now()
        pending = self._pending()
        overdue = Enrichment.objects.filter(pk__in=pending)
        overdue.update(queued_at=now - timedelta(seconds=settings.ENRICHMENT_TIMEOUT + 1))
        if workers_died:
            lease = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 1)
            overdue.filter(started_at__isnull=False).update(started_at=now - lease)
        stuck = {pk: e for pk, e in pending.items() if workers_died or not e.claimed}

        report = enrichments_requeue_timed_out(
            older_than=settings.ENRICHMENT_TIMEOUT,
            max_attempts=max_attempts,
            enrichment_ids=list(pending),
        )

        retried = {pk for pk, e in stuck.items() if e.attempts < max_attempts}
        assert set(report.requeued) == retried
        assert set(report.timed_out) == set(stuck) - retried
        for pk, expected in stuck.items():
            expected.claimed = False
            if pk not in retried:
                expected.status = Status.TIMEOUT

    @invariant()
    def money_matches_the_model_and_the_spec(self) -> None:
        assert_ledger_invariants(self.organization)
        account = CreditAccount.objects.get(organization=self.organization)
        assert (account.balance, account.reserved) == (self.balance, self.reserved)
        stored = Enrichment.objects.filter(organization=self.organization)
        assert {
            pk: (status, attempts)
            for pk, status, attempts in stored.values_list("pk", "status", "attempts")
        } == {pk: (e.status, e.attempts) for pk, e in self.expected.items()}

    @invariant()
    def a_batch_is_complete_exactly_when_none_of_its_enrichments_is_pending(self) -> None:
        stored = EnrichmentBatch.objects.filter(organization=self.organization)
        assert {
            pk: completed_at is not None
            for pk, completed_at in stored.values_list("pk", "completed_at")
        } == {
            pk: all(self.expected[e].status != Status.PENDING for e in ids)
            for pk, ids in self.batches.items()
        }


def test_credit_ledger_matches_its_model_after_any_sequence_of_enrichment_operations(
    db: None,
) -> None:
    run_state_machine_as_test(
        CreditLedgerMachine,
        settings=hypothesis_settings(
            max_examples=50,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )

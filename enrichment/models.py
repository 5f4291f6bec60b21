import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from credits.models import CreditTransaction
from organizations.models import Organization
from persons.models import Person


class Field(models.TextChoices):
    EMAILS = "emails"
    PHONES = "phones"


class Status(models.TextChoices):
    PENDING = "pending"
    FINISHED = "finished"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


REUSABLE_STATUSES = (Status.PENDING, Status.FINISHED)


def release_pending_then_cascade(
    collector: models.deletion.Collector, field: models.Field, sub_objs: Any, using: str
) -> None:
    """Deleting a person deletes its enrichments; the reservations of pending ones are released
    first, so `reserved == sum(price of pending enrichments)` survives the deletion."""
    from enrichment.services import enrichments_release_for_deletion

    enrichments_release_for_deletion(enrichments=sub_objs)
    models.CASCADE(collector, field, sub_objs, using)


class GlobalEnrichment(models.Model):
    """A provider's answer for one identity and field, shared by every organization that asks
    about the same person so the provider is paid once. Keyed by a hash of the normalized
    identity, never by anything tenant-specific."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    lookup_key = models.CharField(max_length=64)
    field = models.CharField(max_length=10, choices=Field.choices)
    data = models.JSONField(default=list)
    provider = models.CharField(max_length=50, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["lookup_key", "field"], name="uniq_global_lookup")
        ]

    def __str__(self) -> str:
        return f"{self.field} for {self.lookup_key[:12]}"


class Enrichment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="enrichments"
    )
    person = models.ForeignKey(
        Person, on_delete=release_pending_then_cascade, related_name="enrichments"
    )
    field = models.CharField(max_length=10, choices=Field.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.CharField(max_length=200, blank=True)
    data_found = models.BooleanField(null=True)
    # The found values, each {"value", "type", "quality"}; null until finished.
    data = models.JSONField(null=True, blank=True)
    provider = models.CharField(max_length=50, blank=True)
    # Names of the providers that answered "not found" in an earlier attempt: a retry skips them.
    providers_not_found = models.JSONField(default=list, blank=True)
    price = models.PositiveIntegerField()
    credits_charged = models.PositiveIntegerField(default=0)
    credit_transaction = models.OneToOneField(
        CreditTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    global_enrichment = models.ForeignKey(
        GlobalEnrichment, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    # attempts counts claims by a worker. started_at and claim_token form the claim's lease: a
    # second copy of a job skips an enrichment another live job holds (see enrichments_claim).
    attempts = models.PositiveSmallIntegerField(default=0)
    claim_token = models.CharField(max_length=64, blank=True)
    queued_at = models.DateTimeField(default=timezone.now)
    # Set when a finished enrichment grew older than ENRICHMENT_REUSE_MAX_AGE and a new one took
    # its place; it keeps the unique index below true without changing a final status.
    superseded_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["organization", "-created_at", "-id"], name="enrichment_org_recent"
            ),
            # The admin's unfiltered list, newest first across organizations.
            models.Index(fields=["-created_at", "-id"], name="enrichment_recent"),
            models.Index(
                fields=["person", "field", "-created_at"], name="enrichment_person_latest"
            ),
            models.Index(
                fields=["queued_at"], condition=Q(status="pending"), name="enrichment_pending_age"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["person", "field"],
                condition=Q(status__in=REUSABLE_STATUSES, superseded_at__isnull=True),
                name="one_reusable_enrichment_per_person_field",
            ),
            models.CheckConstraint(
                condition=(Q(credit_transaction__isnull=True) & Q(credits_charged=0))
                | (
                    Q(credit_transaction__isnull=False)
                    & Q(credits_charged__gt=0)
                    & Q(status=Status.FINISHED)
                    & Q(data_found=True)
                ),
                name="charged_only_when_finished_with_data",
            ),
            models.CheckConstraint(
                condition=Q(status=Status.PENDING, data_found__isnull=True)
                | ~Q(status=Status.PENDING),
                name="pending_has_no_outcome",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.field} for {self.person_id} ({self.status})"


class EnrichmentBatch(models.Model):
    """What one batch or bulk request returned. Its counts are read from its enrichments (see
    enrichment.selectors.enrichment_batches_summarize), so they are never out of date;
    `completed_at` is set by the transaction that ends its last pending enrichment."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="enrichment_batches"
    )
    field = models.CharField(max_length=10, choices=Field.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["organization", "-created_at", "-id"], name="enrichment_batch_org_recent"
            )
        ]

    def __str__(self) -> str:
        return f"{self.field} batch {self.pk}"


class EnrichmentBatchItem(models.Model):
    """One enrichment of a batch, at its place in the request. A membership table rather than an
    id array so it works on SQLite too; indexed by enrichment, so a settlement finds the batches
    its enrichments belong to without looking at any other batch."""

    batch = models.ForeignKey(
        EnrichmentBatch, on_delete=models.CASCADE, related_name="items", db_index=False
    )
    enrichment = models.ForeignKey(Enrichment, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()
    # Reused from an earlier request: its charge, if any, belongs to the batch that created it.
    reused = models.BooleanField()

    class Meta:
        constraints = [
            # Also the index that reads a batch's items in order.
            models.UniqueConstraint(fields=["batch", "position"], name="one_item_per_position")
        ]

    def __str__(self) -> str:
        return f"{self.batch_id} #{self.position}"


class AsyncLookupStatus(models.TextChoices):
    # Recorded before the request is sent: a worker dying mid-call leaves a trace the sweep finds.
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    ANSWERED = "answered"
    # Not ready by ENRICHMENT_ASYNC_MAX_WAIT; or, for an intent, never known to be accepted.
    EXPIRED = "expired"
    LOST = "lost"
    # The provider refused the submission, or was not asked (its circuit was open).
    REFUSED = "refused"


LIVE_ASYNC_STATUSES = (AsyncLookupStatus.SUBMITTING, AsyncLookupStatus.SUBMITTED)


class AsyncLookup(models.Model):
    """One submission of several enrichments to an asynchronous provider (Dropcontact), polled by
    a beat-driven sweep until it is answered or its deadline passes. `poll_after` is when the sweep
    next looks at it; a poller moves it past the task time limit while it holds it (the lease),
    so a poller that dies leaves it due again."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.CharField(max_length=64)
    field = models.CharField(max_length=10, choices=Field.choices)
    status = models.CharField(
        max_length=12, choices=AsyncLookupStatus.choices, default=AsyncLookupStatus.SUBMITTING
    )
    # The provider's id of the submission; empty until it accepted it.
    request_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    poll_after = models.DateTimeField()
    deadline = models.DateTimeField()
    polls = models.PositiveIntegerField(default=0)
    ended_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["poll_after"],
                condition=Q(status__in=LIVE_ASYNC_STATUSES),
                name="async_lookup_due",
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.request_id or self.pk} ({self.status})"


class AsyncLookupItem(models.Model):
    """One enrichment of a submission, at its place in the request (the provider answers in
    submission order). `live` holds while the submission may still answer; an enrichment has at
    most one live item, so a redelivered job can never submit it a second time. `found` is the
    provider's answer once read: False tells a resumed waterfall not to ask that provider again."""

    lookup = models.ForeignKey(
        AsyncLookup, on_delete=models.CASCADE, related_name="items", db_index=False
    )
    enrichment = models.ForeignKey(Enrichment, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()
    live = models.BooleanField(default=True)
    found = models.BooleanField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["lookup", "position"], name="one_async_item_per_position"
            ),
            models.UniqueConstraint(
                fields=["enrichment"],
                condition=Q(live=True),
                name="one_live_async_lookup_per_enrichment",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.lookup_id} #{self.position}"

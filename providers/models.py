from django.db import models


class ProviderCall(models.Model):
    """Append-only log of provider requests. `reference_id` is opaque (the enrichment id), with no
    foreign key, so the log knows nothing of enrichments and outlives them. Written in bulk by
    providers.calls."""

    class Outcome(models.TextChoices):
        FOUND = "found"
        NOT_FOUND = "not_found"
        TRANSIENT = "transient"
        PROVIDER_FAILURE = "provider_failure"
        INVALID_REQUEST = "invalid_request"
        # An asynchronous provider's submission accepted, or a poll answered "not ready yet".
        PENDING = "pending"

    provider = models.CharField(max_length=64)
    reference_id = models.UUIDField(null=True, blank=True, db_index=True)
    # An asynchronous provider's own id of the submission the call belongs to.
    provider_request_id = models.CharField(max_length=128, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField()
    # The request's time, set when it was made (the row is written later, in bulk).
    created_at = models.DateTimeField(db_index=True)
    credits_spent = models.PositiveIntegerField(null=True, blank=True)
    credits_remaining = models.BigIntegerField(null=True, blank=True)
    # A short reason code and the provider's words (keys redacted) for errors and empty answers.
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["provider", "-created_at"], name="provider_call_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.outcome} ({self.created_at:%Y-%m-%d %H:%M:%S})"

from typing import Any

from django.conf import settings
from rest_framework import serializers

from enrichment.models import Enrichment, Field, Status
from enrichment_project.fields import UUID4Field


class FoundValueOut(serializers.Serializer):
    value = serializers.CharField()
    type = serializers.CharField()
    # Values stored before providers graded them have none: unknown.
    quality = serializers.CharField(
        default="unknown", help_text="verified, probable or unknown, as the provider graded it."
    )


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


class EnrichmentOut(serializers.ModelSerializer):
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")
    entityId = serializers.UUIDField(source="person_id")
    entityType = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    dataFound = serializers.BooleanField(source="data_found", allow_null=True)
    createdBy = serializers.IntegerField(source="created_by_id", allow_null=True)
    orgId = serializers.UUIDField(source="organization_id")
    globalEnrichmentId = serializers.UUIDField(source="global_enrichment_id", allow_null=True)
    creditTransactionId = serializers.IntegerField(source="credit_transaction_id", allow_null=True)
    creditsCharged = serializers.IntegerField(source="credits_charged")
    data = FoundValueOut(many=True, allow_null=True)
    provider = serializers.SerializerMethodField(
        help_text="The provider whose answer was used; null when none was."
    )
    attempts = serializers.IntegerField(help_text="How many times the work was tried.")

    class Meta:
        model = Enrichment
        fields = [
            "id",
            "createdAt",
            "updatedAt",
            "entityId",
            "entityType",
            "field",
            "status",
            "error",
            "dataFound",
            "createdBy",
            "orgId",
            "globalEnrichmentId",
            "creditTransactionId",
            "creditsCharged",
            "data",
            "provider",
            "attempts",
        ]

    def to_representation(self, enrichment: Enrichment) -> dict[str, Any]:
        """The declared fields' output, read straight from the row: DRF's generic walk over
        the fields was about a fifth of the CPU of a 100-person batch request."""
        fields = self.fields
        return {
            "id": str(enrichment.id),
            "createdAt": fields["createdAt"].to_representation(enrichment.created_at),
            "updatedAt": fields["updatedAt"].to_representation(enrichment.updated_at),
            "entityId": str(enrichment.person_id),
            "entityType": self.get_entityType(enrichment),
            "field": enrichment.field,
            "status": enrichment.status,
            "error": self.get_error(enrichment),
            "dataFound": enrichment.data_found,
            "createdBy": enrichment.created_by_id,
            "orgId": str(enrichment.organization_id),
            "globalEnrichmentId": _text_or_none(enrichment.global_enrichment_id),
            "creditTransactionId": enrichment.credit_transaction_id,
            "creditsCharged": enrichment.credits_charged,
            "data": None
            if enrichment.data is None
            else fields["data"].to_representation(enrichment.data),
            "provider": self.get_provider(enrichment),
            "attempts": enrichment.attempts,
        }

    def get_entityType(self, enrichment: Enrichment) -> str:
        return "person"

    def get_error(self, enrichment: Enrichment) -> str | None:
        return enrichment.error or None

    def get_provider(self, enrichment: Enrichment) -> str | None:
        return enrichment.provider or None


def _max_age_field() -> serializers.IntegerField:
    return serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=settings.ENRICHMENT_MAX_AGE_LIMIT,
        help_text="Seconds: a finished enrichment older than this is not reused (0: none is).",
    )


class MaxAgeIn(serializers.Serializer):
    maxAge = _max_age_field()


class BatchEnrichmentIn(MaxAgeIn):
    personIds = serializers.ListField(
        child=UUID4Field(), min_length=1, max_length=settings.ENRICHMENT_BATCH_MAX_PERSONS
    )
    field = serializers.ChoiceField(choices=Field.choices)


class BulkEnrichmentIn(MaxAgeIn):
    """Either `personIds` or `search` (with an optional `limit`)."""

    field = serializers.ChoiceField(choices=Field.choices)
    personIds = serializers.ListField(
        child=UUID4Field(),
        min_length=1,
        max_length=settings.ENRICHMENT_BULK_MAX_PERSONS,
        required=False,
    )
    search = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=200,
        help_text="As GET /api/v1/persons?search= (blank: every person), newest first.",
    )
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=settings.ENRICHMENT_BULK_MAX_PERSONS
    )

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if ("personIds" in data) == ("search" in data):
            raise serializers.ValidationError("Send either personIds or search, not both.")
        if "limit" in data and "search" not in data:
            raise serializers.ValidationError({"limit": "A limit goes with a search."})
        return data


class EstimateOut(serializers.Serializer):
    persons = serializers.IntegerField()
    reused = serializers.IntegerField()
    new = serializers.IntegerField()
    creditsRequired = serializers.IntegerField(source="credits_required")
    creditsAvailable = serializers.IntegerField(source="credits_available")
    sufficient = serializers.BooleanField()


class EnrichmentBatchOut(serializers.Serializer):
    id = serializers.UUIDField(source="batch.id")
    createdAt = serializers.DateTimeField(source="batch.created_at")
    field = serializers.CharField(source="batch.field")
    total = serializers.IntegerField()
    pending = serializers.IntegerField(source="by_status.pending")
    finished = serializers.IntegerField(source="by_status.finished")
    found = serializers.IntegerField()
    failed = serializers.IntegerField(source="by_status.failed")
    timeout = serializers.IntegerField(source="by_status.timeout")
    cancelled = serializers.IntegerField(source="by_status.cancelled")
    creditsCharged = serializers.IntegerField(
        source="credits_charged",
        help_text="Charged for the enrichments this batch created; reused ones cost nothing.",
    )
    completedAt = serializers.DateTimeField(source="batch.completed_at", allow_null=True)
    enrichmentIds = serializers.ListField(child=serializers.UUIDField(), source="enrichment_ids")


class FieldQuery(serializers.Serializer):
    field = serializers.ChoiceField(choices=Field.choices)


class EnrichmentTaskIn(serializers.Serializer):
    entityId = UUID4Field()
    field = serializers.ChoiceField(choices=Field.choices)


class BatchQueryIn(serializers.Serializer):
    tasks = serializers.ListField(child=EnrichmentTaskIn(), min_length=1, max_length=200)


class EnrichmentListQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=Status.choices, required=False)
    field = serializers.ChoiceField(choices=Field.choices, required=False)
    personId = UUID4Field(required=False)

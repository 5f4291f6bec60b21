from rest_framework import serializers

from enrichment.models import Enrichment, Field, Status
from enrichment_project.fields import UUID4Field


class FoundValueOut(serializers.Serializer):
    value = serializers.CharField()
    type = serializers.CharField()


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
        ]

    def get_entityType(self, enrichment: Enrichment) -> str:
        return "person"

    def get_error(self, enrichment: Enrichment) -> str | None:
        return enrichment.error or None


class BatchEnrichmentIn(serializers.Serializer):
    personIds = serializers.ListField(child=UUID4Field(), min_length=1, max_length=100)
    field = serializers.ChoiceField(choices=Field.choices)


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

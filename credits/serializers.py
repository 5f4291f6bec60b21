from rest_framework import serializers

from credits.models import CreditTransaction


class CreditTransactionOut(serializers.ModelSerializer):
    organizationId = serializers.UUIDField(source="account_id")
    referenceId = serializers.UUIDField(source="reference_id", allow_null=True)
    balanceAfter = serializers.IntegerField(source="balance_after")
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = CreditTransaction
        fields = [
            "id",
            "organizationId",
            "amount",
            "kind",
            "operation",
            "referenceId",
            "balanceAfter",
            "memo",
            "createdAt",
        ]


class HistoryQuery(serializers.Serializer):
    startDate = serializers.DateTimeField(required=False)
    endDate = serializers.DateTimeField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=50)
    # PostgreSQL's OFFSET is a bigint: a larger offset would fail in the database.
    offset = serializers.IntegerField(required=False, min_value=0, max_value=2**63 - 1, default=0)

    def validate(self, attrs: dict) -> dict:
        start, end = attrs.get("startDate"), attrs.get("endDate")
        if start and end and start > end:
            raise serializers.ValidationError({"endDate": "Must not be before startDate."})
        return attrs

from rest_framework import serializers

from webhooks.events import EVENT_TYPES
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint


class WebhookEndpointIn(serializers.Serializer):
    # Checked against the address rules by the service, which names the reason in details.url.
    url = serializers.CharField(max_length=2000)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES), min_length=1, max_length=10
    )
    description = serializers.CharField(max_length=500, allow_blank=True, default="")


class WebhookEndpointUpdateIn(WebhookEndpointIn):
    disabled = serializers.BooleanField()


class WebhookEndpointOut(serializers.ModelSerializer):
    disabledReason = serializers.SerializerMethodField()
    failingSince = serializers.DateTimeField(source="failing_since", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPES))

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "events",
            "description",
            "disabled",
            "disabledReason",
            "failingSince",
            "createdAt",
            "updatedAt",
        ]

    def get_disabledReason(self, endpoint: WebhookEndpoint) -> str | None:
        return endpoint.disabled_reason or None


class WebhookEndpointWithSecretOut(WebhookEndpointOut):
    secret = serializers.CharField(help_text="Shown only in this answer; store it now.")

    class Meta(WebhookEndpointOut.Meta):
        fields = [*WebhookEndpointOut.Meta.fields, "secret"]


class WebhookDeliveryOut(serializers.ModelSerializer):
    eventId = serializers.UUIDField(source="event_id")
    eventType = serializers.CharField(source="event.type")
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempt = serializers.IntegerField(source="attempts", help_text="Attempts made so far.")
    statusCode = serializers.IntegerField(source="status_code", allow_null=True)
    durationMs = serializers.IntegerField(source="duration_ms", allow_null=True)
    error = serializers.SerializerMethodField()
    nextAttemptAt = serializers.DateTimeField(source="next_attempt_at", allow_null=True)
    lastAttemptAt = serializers.DateTimeField(source="last_attempt_at", allow_null=True)
    deliveredAt = serializers.DateTimeField(source="delivered_at", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "eventId",
            "eventType",
            "status",
            "attempt",
            "statusCode",
            "durationMs",
            "error",
            "nextAttemptAt",
            "lastAttemptAt",
            "deliveredAt",
            "createdAt",
        ]

    def get_error(self, delivery: WebhookDelivery) -> str | None:
        return delivery.error or None

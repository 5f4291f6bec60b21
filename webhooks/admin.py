"""Endpoints and their deliveries, read-only like every admin page; the secrets never appear.
Staff can send failed deliveries again, through the same service as the API."""

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from enrichment_project.errors import ServiceError
from organizations.admin import ServiceAdmin, Tool
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.services import webhook_delivery_retry

RECENT_DELIVERIES = 20


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ServiceAdmin):
    list_display = ("url", "organization", "events", "disabled", "failing_since", "created_at")
    list_select_related = ("organization",)
    list_filter = ("disabled", "organization", "created_at")
    search_fields = ("url", "description", "organization__name")
    uuid_search_fields = ("pk",)
    ordering = ("-created_at",)
    # The signing secrets stay out of every page.
    fields = (
        "id",
        "organization",
        "url",
        "events",
        "description",
        "disabled",
        "disabled_reason",
        "failing_since",
        "previous_secret_expires_at",
        "created_at",
        "updated_at",
        "recent_deliveries",
    )
    readonly_fields = ("recent_deliveries",)

    @admin.display(description=f"last {RECENT_DELIVERIES} deliveries")
    def recent_deliveries(self, endpoint: WebhookEndpoint) -> str:
        deliveries = endpoint.deliveries.select_related("event").order_by("-created_at", "-id")[
            :RECENT_DELIVERIES
        ]
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk]),
                    delivery.event.type,
                    delivery.status,
                    delivery.attempts,
                    delivery.status_code or "-",
                    delivery.error or "-",
                )
                for delivery in deliveries
            ),
        )
        if not rows:
            return "none yet"
        return format_html(
            "<table><tr><th>event</th><th>status</th><th>attempts</th><th>code</th>"
            "<th>error</th></tr>{}</table>",
            rows,
        )

    def object_tools(self, request: HttpRequest, object_id: str) -> list[Tool]:
        listed = reverse("admin:webhooks_webhookdelivery_changelist")
        return [
            ("Deliveries", f"{listed}?endpoint__id__exact={object_id}"),
            (
                "Failed deliveries",
                f"{listed}?endpoint__id__exact={object_id}&status__exact={DeliveryStatus.FAILED}",
            ),
        ]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ServiceAdmin):
    list_display = (
        "event_type",
        "endpoint",
        "organization",
        "status",
        "attempts",
        "status_code",
        "duration_ms",
        "error",
        "next_attempt_at",
        "created_at",
    )
    list_select_related = ("event", "endpoint__organization")
    list_filter = ("status", "endpoint__organization", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("endpoint__url", "error")
    uuid_search_fields = ("pk", "event_id", "endpoint_id")
    ordering = ("-created_at",)
    fields = (
        "id",
        "event",
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "status_code",
        "duration_ms",
        "error",
        "next_attempt_at",
        "last_attempt_at",
        "delivered_at",
        "created_at",
        "payload",
    )
    readonly_fields = ("event_type", "payload")
    actions = ("retry",)

    @admin.display(description="event type", ordering="event__type")
    def event_type(self, delivery: WebhookDelivery) -> str:
        return delivery.event.type

    @admin.display(description="organization")
    def organization(self, delivery: WebhookDelivery) -> str:
        return str(delivery.endpoint.organization)

    @admin.display(description="body data")
    def payload(self, delivery: WebhookDelivery) -> str:
        return format_html("<pre>{}</pre>", json.dumps(delivery.event.payload, indent=2))

    @admin.action(description="Send selected deliveries again", permissions=["service"])
    def retry(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        retried, refused = [], 0
        for delivery in queryset.select_related("endpoint"):
            try:
                retried.append(webhook_delivery_retry(delivery=delivery))
            except ServiceError:
                refused += 1
        self.log_service_change(request, retried, "Queued again")
        message = f"Queued {len(retried)} delivery(ies) again."
        if refused:
            message += f" {refused} belong to a disabled endpoint and were left as they were."
        messages.success(request, message)

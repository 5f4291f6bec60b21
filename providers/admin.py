"""The provider call log, read-only, and the providers page: each provider's last 24 hours and its
circuit. Keys never appear: the log never stores them, and error texts were redacted before it."""

from datetime import UTC, datetime, timedelta

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.urls.resolvers import URLPattern
from django.utils import timezone
from django.utils.http import urlencode

from organizations.admin import ServiceAdmin, Tool
from providers.models import ProviderCall
from providers.registry import provider_names_configured
from providers.selectors import STATS_WINDOW, provider_stats


class ProviderFilter(admin.SimpleListFilter):
    """The configured providers and those with calls in the last 24 hours: a DISTINCT over the
    whole log would read every row of a table that only grows."""

    title = "provider"
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        recent = (
            ProviderCall.objects.filter(created_at__gte=timezone.now() - STATS_WINDOW)
            .order_by()
            .values_list("provider", flat=True)
            .distinct()
        )
        configured = provider_names_configured()
        names = configured + sorted(set(recent) - set(configured))
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(provider=self.value()) if self.value() else queryset


@admin.register(ProviderCall)
class ProviderCallAdmin(ServiceAdmin):
    list_display = (
        "created_at",
        "provider",
        "outcome",
        "http_status",
        "duration_ms",
        "credits_spent",
        "credits_remaining",
        "reference_id",
        "error",
    )
    list_filter = (ProviderFilter, "outcome", "created_at")
    search_fields = ("error", "provider_request_id")
    uuid_search_fields = ("reference_id",)
    ordering = ("-created_at", "-id")
    fields = (
        "provider",
        "outcome",
        "http_status",
        "duration_ms",
        "created_at",
        "reference_id",
        "provider_request_id",
        "credits_spent",
        "credits_remaining",
        "error",
    )

    def get_urls(self) -> list[URLPattern]:
        overview = path(
            "overview/",
            self.admin_site.admin_view(self.overview_view),
            name="providers_overview",
        )
        return [overview, *super().get_urls()]

    def list_tools(self, request: HttpRequest) -> list[Tool]:
        return [("Providers", reverse("admin:providers_overview"))]

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        now = timezone.now()
        since = now - STATS_WINDOW
        changelist = reverse("admin:providers_providercall_changelist")

        def calls_url(**filters: str) -> str:
            return f"{changelist}?{urlencode({'created_at__gte': since.isoformat(), **filters})}"

        rows = [
            {
                "stats": stats,
                "calls_url": calls_url(provider=stats.provider),
                "outcomes": [
                    (
                        stats.outcomes.get(outcome, 0),
                        calls_url(provider=stats.provider, outcome__exact=outcome),
                    )
                    for outcome in ProviderCall.Outcome.values
                ],
                "opened_at": _moment(stats.circuit.opened_at),
                "reopen_at": _moment(stats.circuit.reopen_at),
                "found_percent": None if stats.found_rate is None else stats.found_rate * 100,
            }
            for stats in provider_stats(now=now)
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Providers",
            "rows": rows,
            "outcome_labels": ProviderCall.Outcome.labels,
            "window_hours": round(STATS_WINDOW / timedelta(hours=1)),
            "now": now,
        }
        return TemplateResponse(request, "admin/providers/overview.html", context)


def _moment(epoch: float | None) -> datetime | None:
    """A circuit's time (Unix seconds in Redis) as an aware datetime for the template."""
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None

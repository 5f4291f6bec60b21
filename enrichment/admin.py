"""Enrichments and the operations overview; and what the credit admin can only show with
enrichment rows, added here because credits imports nothing from this app: links from charges to
their enrichments, and the ledger check."""

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.urls.resolvers import URLPattern
from django.utils import timezone
from django.utils.html import format_html, format_html_join, mark_safe
from django.utils.http import urlencode
from django.utils.timesince import timesince

from credits.admin import CreditAccountAdmin, CreditTransactionAdmin
from credits.models import CreditAccount, CreditTransaction
from enrichment.ledger_check import LedgerCheck, ledger_check
from enrichment.models import Enrichment, Status
from enrichment.services import (
    Settlement,
    enrichments_requeue_timed_out,
    enrichments_settle,
)
from organizations.admin import ServiceAdmin, Tool
from organizations.models import Organization
from providers.models import ProviderCall

CHART_DAYS = 14
PROVIDER_CALLS_SHOWN = 50


def _timeout_text() -> str:
    now = timezone.now()
    return timesince(now - timedelta(seconds=settings.ENRICHMENT_TIMEOUT), now)


def _stuck_cutoff() -> datetime:
    return timezone.now() - timedelta(seconds=settings.ENRICHMENT_TIMEOUT)


class StuckFilter(admin.SimpleListFilter):
    """Pending past ENRICHMENT_TIMEOUT since last queued: what the re-queue action acts on."""

    title = "stuck"
    parameter_name = "stuck"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", f"Pending for over {_timeout_text()}")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Enrichment]) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(status=Status.PENDING, queued_at__lt=_stuck_cutoff())
        return queryset


@admin.register(Enrichment)
class EnrichmentAdmin(ServiceAdmin):
    list_display = (
        "short_id",
        "status",
        "field",
        "organization",
        "person",
        "provider",
        "attempts",
        "age",
    )
    list_select_related = ("organization", "person")
    list_filter = ("status", StuckFilter, "field", "organization", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("person__first_name", "person__last_name", "person__company_domain")
    uuid_search_fields = ("pk", "person_id")
    ordering = ("-created_at",)
    actions = ("requeue", "cancel")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "organization",
                    "person",
                    "field",
                    "status",
                    "error",
                    "created_by",
                    "created_at",
                )
            },
        ),
        (
            "Result",
            {"fields": ("data_found", "found", "provider", "global_enrichment", "finished_at")},
        ),
        ("Credits", {"fields": ("price", "credits_charged", "credit_transaction")}),
        (
            "Processing",
            {"fields": ("attempts", "queued_at", "started_at", "superseded_at", "updated_at")},
        ),
        ("Provider calls", {"fields": ("provider_calls",)}),
    )
    readonly_fields = ("found", "provider_calls")

    @admin.display(description="id")
    def short_id(self, enrichment: Enrichment) -> str:
        return str(enrichment.pk)[:8]

    @admin.display(description="age", ordering="created_at")
    def age(self, enrichment: Enrichment) -> str:
        return timesince(enrichment.created_at, depth=1)

    @admin.display(description="found values")
    def found(self, enrichment: Enrichment) -> str:
        if not enrichment.data:
            return "-"
        return format_html_join(
            mark_safe("<br>"),
            "{} ({})",
            ((found["value"], found.get("type") or "no type") for found in enrichment.data),
        )

    @admin.display(description=f"first {PROVIDER_CALLS_SHOWN} calls")
    def provider_calls(self, enrichment: Enrichment) -> str:
        # The call log knows the enrichment only by its id (reference_id): one indexed query.
        calls = ProviderCall.objects.filter(reference_id=enrichment.pk).order_by("created_at", "id")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td><td>{}</td>"
            "</tr>",
            (
                (
                    call.created_at.isoformat(timespec="milliseconds"),
                    call.provider,
                    call.outcome,
                    call.http_status or "-",
                    call.duration_ms,
                    "-" if call.credits_spent is None else call.credits_spent,
                    call.error or "-",
                )
                for call in calls[:PROVIDER_CALLS_SHOWN]
            ),
        )
        if not rows:
            return "none"
        return format_html(
            "<table><tr><th>time</th><th>provider</th><th>outcome</th><th>HTTP status</th>"
            "<th>duration</th><th>credits spent</th><th>error or note</th></tr>{}</table>"
            '<a href="{}?{}">all calls in the call log</a>',
            rows,
            reverse("admin:providers_providercall_changelist"),
            urlencode({"q": str(enrichment.pk)}),
        )

    def get_urls(self) -> list[URLPattern]:
        overview = path(
            "overview/",
            self.admin_site.admin_view(self.overview_view),
            name="enrichment_overview",
        )
        return [overview, *super().get_urls()]

    def list_tools(self, request: HttpRequest) -> list[Tool]:
        return [("Overview", reverse("admin:enrichment_overview"))]

    @admin.action(description="Re-queue selected stuck enrichments", permissions=["service"])
    def requeue(self, request: HttpRequest, queryset: QuerySet[Enrichment]) -> None:
        pending = list(queryset.filter(status=Status.PENDING).values_list("pk", flat=True))
        report = enrichments_requeue_timed_out(
            older_than=settings.ENRICHMENT_TIMEOUT,
            max_attempts=settings.ENRICHMENT_MAX_ATTEMPTS,
            enrichment_ids=pending,
        )
        self.log_service_change(
            request, Enrichment.objects.filter(pk__in=report.requeued), "Re-queued"
        )
        self.log_service_change(
            request, Enrichment.objects.filter(pk__in=report.timed_out), "Timed out (re-queue)"
        )
        message = f"Re-queued {len(report.requeued)} enrichment(s)."
        if report.timed_out:
            message += (
                f" Ended {len(report.timed_out)} as timeout: no attempts left "
                f"(ENRICHMENT_MAX_ATTEMPTS={settings.ENRICHMENT_MAX_ATTEMPTS}); their credits "
                "were released."
            )
        self._message_with_skips(request, message, queryset, [*report.requeued, *report.timed_out])

    @admin.action(description="Cancel selected pending enrichments", permissions=["service"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Enrichment]) -> None:
        # One settlement: a transaction per organization, not one per selected row.
        cancelled = enrichments_settle(
            settlements=[
                Settlement(enrichment=enrichment, status=Status.CANCELLED, reason="cancelled")
                for enrichment in queryset.filter(status=Status.PENDING)
            ]
        )
        self.log_service_change(request, cancelled, "Cancelled")
        message = f"Cancelled {len(cancelled)} enrichment(s); their credits were released."
        self._message_with_skips(
            request, message, queryset, [enrichment.pk for enrichment in cancelled]
        )

    def _message_with_skips(
        self,
        request: HttpRequest,
        message: str,
        selected: QuerySet[Enrichment],
        changed: Collection[uuid.UUID],
    ) -> None:
        """`message`, then why the selected rows the action left alone were skipped, judged by
        their state now: an action only ever changes pending enrichments."""
        cutoff = _stuck_cutoff()
        reasons = {
            f"{status.label.lower()} (not pending)": Q(status=status)
            for status in Status
            if status != Status.PENDING
        } | {
            f"queued less than {_timeout_text()} ago": Q(
                status=Status.PENDING, queued_at__gte=cutoff
            ),
            "held by a running worker": Q(status=Status.PENDING, queued_at__lt=cutoff),
        }
        # Aggregate aliases cannot hold spaces: the reasons are numbered.
        counts = selected.exclude(pk__in=list(changed)).aggregate(
            **{f"r{index}": Count("pk", filter=q) for index, q in enumerate(reasons.values())}
        )
        skipped = {
            reason: counts[f"r{index}"]
            for index, reason in enumerate(reasons)
            if counts[f"r{index}"]
        }
        if skipped:
            reasons_text = ", ".join(f"{count} {reason}" for reason, count in skipped.items())
            message += f" Skipped {sum(skipped.values())}: {reasons_text}."
        messages.success(request, message)

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        now = timezone.now()
        changelist = reverse("admin:enrichment_enrichment_changelist")
        day_ago = now - timedelta(hours=24)
        last_day = dict(
            Enrichment.objects.filter(created_at__gte=day_ago)
            .values_list("status")
            .annotate(count=Count("pk"))
        )
        pending = Enrichment.objects.filter(status=Status.PENDING)
        oldest = pending.select_related("person", "organization").order_by("created_at").first()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Enrichment overview",
            "last_day": [
                (
                    status.label,
                    last_day.get(status.value, 0),
                    changelist
                    + "?"
                    + urlencode({"status__exact": status, "created_at__gte": day_ago.isoformat()}),
                )
                for status in Status
            ],
            "pending_count": pending.count(),
            "stuck_count": pending.filter(queued_at__lt=_stuck_cutoff()).count(),
            "stuck_url": f"{changelist}?stuck=yes",
            "timeout": _timeout_text(),
            "oldest": oldest,
            "oldest_age": timesince(oldest.created_at, now, depth=2) if oldest else None,
            "chart": charges_chart(daily_charges(timezone.localdate(now))),
        }
        return TemplateResponse(request, "admin/enrichment/overview.html", context)


def daily_charges(today: date) -> list[tuple[date, int]]:
    """Credits charged on each of the last CHART_DAYS days, oldest first, zero-filled."""
    first = today - timedelta(days=CHART_DAYS - 1)
    since = datetime.combine(first, time.min, tzinfo=timezone.get_current_timezone())
    totals = dict(
        CreditTransaction.objects.filter(kind=CreditTransaction.Kind.CHARGE, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .order_by()  # the ledger's default ordering would split the groups
        .values_list("day")
        .annotate(total=Sum("amount"))
    )
    days = [first + timedelta(days=offset) for offset in range(CHART_DAYS)]
    return [(day, -totals.get(day, 0)) for day in days]


@dataclass(frozen=True)
class Bar:
    day: date
    value: int
    x: float
    center: float
    y: float
    height: float


# The chart's geometry, in SVG user units.
SLOT_WIDTH, BAR_WIDTH, TOP, PLOT_HEIGHT, BOTTOM = 52, 34, 22, 170, 26


def charges_chart(days: list[tuple[date, int]]) -> dict[str, Any]:
    """Bars scaled to the busiest day, for the overview template to draw as inline SVG."""
    peak = max((value for _, value in days), default=0) or 1
    bars = []
    for index, (day, value) in enumerate(days):
        height = PLOT_HEIGHT * value / peak
        x = index * SLOT_WIDTH + (SLOT_WIDTH - BAR_WIDTH) / 2
        bars.append(
            Bar(
                day=day,
                value=value,
                x=x,
                center=x + BAR_WIDTH / 2,
                y=TOP + PLOT_HEIGHT - height,
                height=height,
            )
        )
    return {
        "bars": bars,
        "width": SLOT_WIDTH * len(days),
        "height": TOP + PLOT_HEIGHT + BOTTOM,
        "bar_width": BAR_WIDTH,
        "baseline": TOP + PLOT_HEIGHT,
        "label_y": TOP + PLOT_HEIGHT + 17,
        "total": sum(value for _, value in days),
    }


# --- The credit admin, with what only enrichment rows can tell ---------------------------------


class LedgerCheckedCreditAccountAdmin(CreditAccountAdmin):
    actions = ("check_ledger",)

    def get_urls(self) -> list[URLPattern]:
        check = path(
            "<uuid:organization_id>/check-ledger/",
            self.admin_site.admin_view(self.check_ledger_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_check_ledger",
        )
        return [check, *super().get_urls()]

    def object_tools(self, request: HttpRequest, object_id: str) -> list[Tool]:
        check = ("Check ledger", self.admin_url("check_ledger", object_id))
        return [*super().object_tools(request, object_id), check]

    @admin.action(description="Check ledger invariants", permissions=["view"])
    def check_ledger(self, request: HttpRequest, queryset: QuerySet[CreditAccount]) -> None:
        for account in queryset.select_related("organization"):
            _report_check(request, account.organization, ledger_check(account.pk))

    def check_ledger_view(self, request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        organization = get_object_or_404(Organization, pk=organization_id)
        _report_check(request, organization, ledger_check(organization.pk))
        return HttpResponseRedirect(self.admin_url("change", organization.pk))


def _report_check(request: HttpRequest, organization: Organization, check: LedgerCheck) -> None:
    if check.ok:
        messages.success(
            request,
            f"{organization}: the ledger checks out. Balance {check.balance} is the sum of its "
            f"ledger entries; reserved {check.reserved} is the price of its pending enrichments.",
        )
    else:
        messages.error(request, f"{organization}: {'; '.join(check.problems)}.")


class EnrichmentLinkedCreditTransactionAdmin(CreditTransactionAdmin):
    @admin.display(description="reference")
    def reference(self, entry: CreditTransaction) -> str:
        if entry.reference_id is None or not entry.operation.startswith("enrichment."):
            return super().reference(entry)
        return format_html(
            '<a href="{}" title="{}">enrichment {}</a>',
            reverse("admin:enrichment_enrichment_change", args=[entry.reference_id]),
            entry.reference_id,
            str(entry.reference_id)[:8],
        )


# credits.admin registered its admins when imported above; they are swapped for the versions
# that know about enrichments.
for _model, _model_admin in (
    (CreditAccount, LedgerCheckedCreditAccountAdmin),
    (CreditTransaction, EnrichmentLinkedCreditTransactionAdmin),
):
    admin.site.unregister(_model)
    admin.site.register(_model, _model_admin)

# The admin index links to the overview. A template of this app cannot override
# admin/index.html itself: django.contrib.admin comes first in INSTALLED_APPS.
admin.site.index_template = "admin/enrichment/site_index.html"

"""Credit accounts and their ledger. Nothing here writes a balance: the one way to change credits
from the admin is the grant form, which calls `credits_grant` and so writes a ledger entry."""

import uuid
from functools import partial

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.urls.resolvers import URLPattern
from django.utils.html import format_html

from credits.models import CreditAccount, CreditTransaction
from credits.services import credits_grant
from organizations.admin import ReadOnlyInline, ServiceAdmin, Tool
from organizations.models import Organization

LEDGER_INLINE_ROWS = 50
# What a ledger entry shows, in the account's inline and on its own page.
ENTRY_FIELDS = ("kind", "amount", "balance_after", "operation", "reference", "actor", "memo")
# A guard against a mistyped amount; larger moves take several entries.
GRANT_LIMIT = 1_000_000_000


class NewestLedgerFormSet(BaseInlineFormSet):
    def get_queryset(self) -> QuerySet[CreditTransaction]:
        # Sliced once and kept: the formset asks for its queryset several times.
        if not hasattr(self, "_newest"):
            self._newest = super().get_queryset()[:LEDGER_INLINE_ROWS]
        return self._newest


class LedgerInline(ReadOnlyInline):
    model = CreditTransaction
    formset = NewestLedgerFormSet
    verbose_name_plural = f"ledger (newest {LEDGER_INLINE_ROWS} entries)"
    fields = ("created_at", *ENTRY_FIELDS)
    readonly_fields = fields
    select_related = ("actor",)
    show_change_link = True

    @admin.display(description="reference")
    def reference(self, entry: CreditTransaction) -> str:
        # The ledger's admin renders references, so an app that spends credits can link them.
        return self.admin_site.get_model_admin(CreditTransaction).reference(entry)


class GrantForm(forms.Form):
    amount = forms.IntegerField(
        min_value=-GRANT_LIMIT,
        max_value=GRANT_LIMIT,
        help_text="Positive grants credits; negative takes available credits back (adjustment).",
    )
    memo = forms.CharField(
        max_length=500, help_text="Why: kept in the ledger entry, with you as its actor."
    )


@admin.register(CreditAccount)
class CreditAccountAdmin(ServiceAdmin):
    list_display = ("organization", "balance", "reserved", "available", "updated_at")
    list_select_related = ("organization",)
    search_fields = ("organization__name",)
    uuid_search_fields = ("pk",)
    ordering = ("organization__name",)
    fields = ("organization", "balance", "reserved", "available", "updated_at", "full_ledger")
    readonly_fields = ("available", "full_ledger")
    inlines = (LedgerInline,)

    @admin.display(description="available")
    def available(self, account: CreditAccount) -> int:
        return account.available

    @admin.display(description="ledger")
    def full_ledger(self, account: CreditAccount) -> str:
        url = reverse("admin:credits_credittransaction_changelist")
        return format_html(
            '<a href="{}?account__organization__id__exact={}">all entries</a>', url, account.pk
        )

    def get_urls(self) -> list[URLPattern]:
        grant = path(
            "<uuid:organization_id>/grant/",
            self.admin_site.admin_view(self.grant_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_grant",
        )
        return [grant, *super().get_urls()]

    def object_tools(self, request: HttpRequest, object_id: str) -> list[Tool]:
        if not self.has_service_permission(request):
            return []
        return [("Grant or adjust credits", self.admin_url("grant", object_id))]

    def grant_view(self, request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
        """The account is the organization's: granting to an organization without one yet
        creates it, so this takes the organization id."""
        if not self.has_service_permission(request):
            raise PermissionDenied
        organization = get_object_or_404(Organization, pk=organization_id)
        account = CreditAccount.objects.filter(pk=organization_id).first()
        intro = (
            f"{organization}: balance {account.balance}, reserved {account.reserved}, "
            f"available {account.available}."
            if account
            else f"{organization} has no credits yet."
        )
        form = GrantForm(request.POST if request.method == "POST" else None)
        return self.service_form_view(
            request,
            form=form,
            title="Grant or adjust credits",
            submit_label="Write ledger entry",
            perform=partial(self._grant, request, organization),
            original=account,
            intro=intro,
        )

    def _grant(self, request: HttpRequest, organization: Organization, form: forms.Form) -> str:
        amount, memo = form.cleaned_data["amount"], form.cleaned_data["memo"]
        entry = credits_grant(
            organization=organization, amount=amount, memo=memo, actor=request.user
        )
        self.log_service_change(request, [entry.account], f"Ledger entry #{entry.pk}: {amount:+d}")
        messages.success(
            request,
            f"Wrote ledger entry #{entry.pk} ({entry.kind} {amount:+d}) for {organization}: "
            f"the balance is now {entry.balance_after}.",
        )
        return self.admin_url("change", organization.pk)


@admin.register(CreditTransaction)
class CreditTransactionAdmin(ServiceAdmin):
    list_display = (
        "created_at",
        "organization",
        "kind",
        "amount",
        "balance_after",
        "reference",
        "actor",
        "memo",
    )
    list_select_related = ("account__organization", "actor")
    # Filtering on the organization, not the account: an account's name needs its organization.
    list_filter = ("kind", "operation", "account__organization", "created_at")
    search_fields = ("memo",)
    uuid_search_fields = ("reference_id",)
    fields = ("id", "created_at", "organization", *ENTRY_FIELDS)
    readonly_fields = ("organization", "reference")

    @admin.display(description="organization", ordering="account__organization__name")
    def organization(self, entry: CreditTransaction) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:credits_creditaccount_change", args=[entry.account_id]),
            entry.account.organization,
        )

    @admin.display(description="reference")
    def reference(self, entry: CreditTransaction) -> str:
        return str(entry.reference_id or "-")

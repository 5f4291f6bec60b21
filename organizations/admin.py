"""Admin for tenants and their API keys, plus the building blocks every app's admin shares:
organizations is the app all others depend on, so they can import them from here.

Staff never edit rows through model forms. Every change goes through a service, from an action,
an add form or a custom view, and is written to the object's admin history."""

import uuid
from collections.abc import Callable, Iterable
from functools import cached_property, partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from enrichment_project.errors import ServiceError
from organizations.models import ApiKey, Membership, Organization
from organizations.services import api_key_create, api_key_revoke, organization_create

Tool = tuple[str, str]  # (label, url) of a button at the top of an admin page


class EstimatedCountPaginator(Paginator):
    """Counts an unfiltered list of a large table from PostgreSQL's statistics instead of scanning
    it: `pg_class.reltuples`, kept fresh by autovacuum's ANALYZE, is close enough to number the
    pages. Filtered lists, small tables and other databases get an exact count."""

    exact_below = 20_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet) and not queryset.query.where:
            estimate = _estimated_rows(queryset)
            if estimate is not None and estimate >= self.exact_below:
                return estimate
        return super().count


def _estimated_rows(queryset: QuerySet) -> int | None:
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [connection.ops.quote_name(queryset.model._meta.db_table)],
        )
        row = cursor.fetchone()
    # -1 (or no row) means the table was never analyzed: there is no estimate.
    return row[0] if row and row[0] >= 0 else None


def _as_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None


class ServiceAdmin(admin.ModelAdmin):
    """Read-only model pages whose changes all go through services.

    Forms never write, so nobody can type a new balance or status. The model's `change`
    permission grants the service-backed actions and views instead (`permissions=["service"]`),
    and an admin with an `add_form` creates rows through `add_with_service`."""

    add_form: type[forms.Form] | None = None
    # A search term that is a UUID matches these fields exactly, by index; any other term goes
    # through search_fields (a UUID in `icontains` would cast every row to text).
    uuid_search_fields: tuple[str, ...] = ()
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    change_form_template = "admin/service_change_form.html"
    change_list_template = "admin/service_change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.add_form is not None and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_service_permission(self, request: HttpRequest) -> bool:
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        value = _as_uuid(search_term)
        if value is None or not self.uuid_search_fields:
            return super().get_search_results(request, queryset, search_term)
        matches = Q.create([(field, value) for field in self.uuid_search_fields], connector=Q.OR)
        return queryset.filter(matches), False

    def object_tools(self, request: HttpRequest, object_id: str) -> list[Tool]:
        return []

    def list_tools(self, request: HttpRequest) -> list[Tool]:
        return []

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "tools": self.object_tools(request, object_id)}
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "tools": self.list_tools(request)}
        return super().changelist_view(request, extra_context)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if self.add_form is None or not self.has_add_permission(request):
            raise PermissionDenied
        form = self.add_form(
            request.POST if request.method == "POST" else None, initial=request.GET.dict()
        )
        return self.service_form_view(
            request,
            form=form,
            title=f"Add {self.opts.verbose_name}",
            submit_label="Save",
            perform=partial(self.add_with_service, request),
        )

    def add_with_service(self, request: HttpRequest, form: forms.Form) -> str:
        """Creates the object from the valid `add_form`; returns the URL to go to next."""
        raise NotImplementedError

    def service_form_view(
        self,
        request: HttpRequest,
        *,
        form: forms.Form,
        title: str,
        submit_label: str,
        perform: Callable[[forms.Form], str],
        original: Model | None = None,
        intro: str = "",
    ) -> HttpResponse:
        """Shows `form`; once it is valid, `perform` calls the service and returns the URL to
        redirect to. A service's refusal (not enough credits, ...) becomes a form error."""
        if form.is_bound and form.is_valid():
            try:
                next_url = perform(form)
            except ServiceError as error:
                form.add_error(None, error.message)
            else:
                return HttpResponseRedirect(next_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "form": form,
            "submit_label": submit_label,
            "original": original,
            "intro": intro,
        }
        return TemplateResponse(request, "admin/service_form.html", context)

    def log_service_change(
        self, request: HttpRequest, objects: Iterable[Model], message: str
    ) -> None:
        LogEntry.objects.log_actions(
            user_id=request.user.pk,
            queryset=list(objects),
            action_flag=CHANGE,
            change_message=message,
        )

    def admin_url(self, view: str, *args: object) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{view}", args=args)


class ReadOnlyInline(admin.TabularInline):
    """Rows shown for context; without any write permission Django renders every field as text."""

    extra = 0
    # Related rows each field shows, fetched with the rows instead of one query per row.
    select_related: tuple[str, ...] = ()

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        # select_related() with no names would follow every foreign key.
        return queryset.select_related(*self.select_related) if self.select_related else queryset

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class MembershipInline(ReadOnlyInline):
    model = Membership
    fields = ("user", "role", "created_at")
    readonly_fields = fields
    # The row's title is str(membership), which names both.
    select_related = ("user", "organization")


class ApiKeyInline(ReadOnlyInline):
    model = ApiKey
    fields = ("prefix", "name", "user", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    select_related = ("user",)
    show_change_link = True


class OrganizationAddForm(forms.Form):
    name = forms.CharField(max_length=200)


@admin.register(Organization)
class OrganizationAdmin(ServiceAdmin):
    list_display = ("name", "credits", "created_at")
    list_select_related = ("credit_account",)
    search_fields = ("name",)
    uuid_search_fields = ("pk",)
    ordering = ("name",)
    fields = ("id", "name", "created_at", "credits")
    readonly_fields = ("credits",)
    inlines = (MembershipInline, ApiKeyInline)
    add_form = OrganizationAddForm

    @admin.display(description="credits")
    def credits(self, organization: Organization) -> str:
        # Linked by URL name: organizations imports no other app of the project.
        account = getattr(organization, "credit_account", None)
        if account is None:
            return format_html(
                'no credits yet (<a href="{}">grant</a>)',
                reverse("admin:credits_creditaccount_grant", args=[organization.pk]),
            )
        return format_html(
            '<a href="{}">{} available</a> ({} balance, {} reserved)',
            reverse("admin:credits_creditaccount_change", args=[organization.pk]),
            account.available,
            account.balance,
            account.reserved,
        )

    def object_tools(self, request: HttpRequest, object_id: str) -> list[Tool]:
        def listed(model: str, lookup: str = "organization__id__exact") -> str:
            return f"{reverse(f'admin:{model}_changelist')}?{lookup}={object_id}"

        tools = [
            ("Ledger", listed("credits_credittransaction", "account__organization__id__exact")),
            ("Enrichments", listed("enrichment_enrichment")),
            ("Persons", listed("persons_person")),
            ("API keys", listed("organizations_apikey")),
        ]
        # The buttons that lead to a change appear only for those allowed to make it.
        if request.user.has_perm("credits.change_creditaccount"):
            grant = reverse("admin:credits_creditaccount_grant", args=[object_id])
            tools.insert(0, ("Grant or adjust credits", grant))
        if request.user.has_perm("organizations.add_apikey"):
            issue = f"{reverse('admin:organizations_apikey_add')}?organization={object_id}"
            tools.append(("Issue API key", issue))
        return tools

    def add_with_service(self, request: HttpRequest, form: forms.Form) -> str:
        organization = organization_create(name=form.cleaned_data["name"])
        self.log_addition(request, organization, "Created")
        messages.success(request, f"Organization {organization} created.")
        return self.admin_url("change", organization.pk)


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() in ("active", "revoked"):
            return queryset.filter(revoked_at__isnull=self.value() == "active")
        return queryset


class ApiKeyIssueForm(forms.Form):
    organization = forms.ModelChoiceField(Organization.objects.order_by("name"))
    username = forms.CharField(
        max_length=150, help_text="The key's user; created and made a member if needed."
    )
    name = forms.CharField(max_length=100, required=False, label="Label")


@admin.register(ApiKey)
class ApiKeyAdmin(ServiceAdmin):
    list_display = (
        "prefix",
        "name",
        "organization",
        "user",
        "created_at",
        "last_used_at",
        "status",
    )
    list_select_related = ("organization", "user")
    list_filter = (ApiKeyStatusFilter, "organization")
    search_fields = ("prefix", "name", "user__username", "organization__name")
    ordering = ("-created_at",)
    # The hash stays out of every page: it is of no use to staff.
    fields = ("prefix", "name", "organization", "user", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)
    add_form = ApiKeyIssueForm

    @admin.display(description="status")
    def status(self, api_key: ApiKey) -> str:
        return "active" if api_key.is_active else "revoked"

    @admin.action(description="Revoke selected API keys", permissions=["service"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        selected = queryset.count()
        active = list(queryset.filter(revoked_at__isnull=True))
        for api_key in active:
            api_key_revoke(api_key=api_key)
        self.log_service_change(request, active, "Revoked")
        message = f"Revoked {len(active)} API key(s)."
        if selected > len(active):
            message += f" {selected - len(active)} were already revoked and left as they were."
        messages.success(request, message)

    def add_with_service(self, request: HttpRequest, form: forms.Form) -> str:
        issued = api_key_create(
            organization=form.cleaned_data["organization"],
            username=form.cleaned_data["username"],
            name=form.cleaned_data["name"],
        )
        self.log_addition(request, issued.api_key, "Issued")
        # The secret exists only in this message: the database keeps its hash.
        messages.warning(
            request,
            f"API key issued for {issued.api_key.user} in {issued.api_key.organization}. "
            f"Copy it now, it will not be shown again: {issued.secret}",
        )
        return self.admin_url("change", issued.api_key.pk)

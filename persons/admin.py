from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse

from organizations.admin import ReadOnlyInline, ServiceAdmin, Tool
from persons.models import ContactPoint, Person


class ContactPointInline(ReadOnlyInline):
    model = ContactPoint
    fields = ("kind", "value", "type", "provider", "found_at")
    readonly_fields = fields


@admin.register(Person)
class PersonAdmin(ServiceAdmin):
    list_display = ("__str__", "company_name", "company_domain", "organization", "created_at")
    list_select_related = ("organization",)
    list_filter = ("organization",)
    search_fields = ("first_name", "last_name", "company_domain", "company_name", "linkedin_url")
    uuid_search_fields = ("pk",)
    ordering = ("-created_at",)
    fields = (
        "id",
        "organization",
        "first_name",
        "last_name",
        "title",
        "company_name",
        "company_domain",
        "linkedin_url",
        "created_at",
        "updated_at",
    )
    inlines = (ContactPointInline,)

    def object_tools(self, request: HttpRequest, object_id: str) -> list[Tool]:
        # By URL name: persons imports nothing from the enrichment app.
        enrichments = reverse("admin:enrichment_enrichment_changelist")
        return [("Enrichments", f"{enrichments}?person__id__exact={object_id}")]

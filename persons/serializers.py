import copy
import re
from collections.abc import Mapping
from typing import Any

from django.core.validators import URLValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from persons.models import ContactPoint, Person
from persons.services import IDENTITY_RULE, person_is_identifiable

# Labels separated by dots, at least two of them, no scheme, path, port, user or whitespace.
_DOMAIN = re.compile(r"^[^\s/@:.]+(\.[^\s/@:.]+)+$")


class StringField(serializers.CharField):
    """A string, or null meaning none (stored as ""). DRF's CharField would turn 42 into "42" and
    hide the client's mistake, so anything else is refused."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, allow_blank=True, allow_null=True, **kwargs)

    def run_validation(self, data: Any = serializers.empty) -> str:
        value = super().run_validation(data)
        return "" if value is None else value

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class NoneIfBlankField(serializers.CharField):
    """An optional string column on output: "" (nothing stored) is rendered as null."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_null=True, **kwargs)

    def to_representation(self, value: str) -> str | None:
        return value or None


class ContactPointOut(serializers.ModelSerializer):
    type = NoneIfBlankField()
    provider = NoneIfBlankField()
    foundAt = serializers.DateTimeField(source="found_at")

    class Meta:
        model = ContactPoint
        fields = ["value", "type", "quality", "provider", "foundAt"]


class PersonOut(serializers.ModelSerializer):
    firstName = NoneIfBlankField(source="first_name")
    lastName = NoneIfBlankField(source="last_name")
    companyName = NoneIfBlankField(source="company_name")
    companyDomain = NoneIfBlankField(source="company_domain")
    linkedinUrl = NoneIfBlankField(source="linkedin_url")
    title = NoneIfBlankField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")
    emails = serializers.SerializerMethodField()
    phones = serializers.SerializerMethodField()

    class Meta:
        model = Person
        fields = [
            "id",
            "firstName",
            "lastName",
            "companyName",
            "companyDomain",
            "linkedinUrl",
            "title",
            "createdAt",
            "updatedAt",
            "emails",
            "phones",
        ]

    @extend_schema_field(ContactPointOut(many=True))
    def get_emails(self, person: Person) -> list[dict[str, Any]]:
        return self._contact_points(person, ContactPoint.Kind.EMAIL)

    @extend_schema_field(ContactPointOut(many=True))
    def get_phones(self, person: Person) -> list[dict[str, Any]]:
        return self._contact_points(person, ContactPoint.Kind.PHONE)

    def _contact_points(self, person: Person, kind: str) -> list[dict[str, Any]]:
        # Filtered in Python so a prefetched `contact_points` serves both lists without a query.
        points = [point for point in person.contact_points.all() if point.kind == kind]
        return ContactPointOut(points, many=True).data


class PersonIn(serializers.Serializer):
    """A person needs linkedinUrl, or firstName, lastName and companyDomain or companyName.
    null or "" leaves a field empty; unknown and read-only keys are refused."""

    # Each field's `source` is the model field, so validated_data can go straight to the model.
    firstName = StringField(source="first_name", max_length=100)
    lastName = StringField(source="last_name", max_length=100)
    companyName = StringField(source="company_name", max_length=200)
    companyDomain = StringField(source="company_domain", max_length=253)
    linkedinUrl = StringField(
        source="linkedin_url",
        max_length=500,
        validators=[URLValidator(schemes=["http", "https"], message="Enter a valid http(s) URL.")],
    )
    title = StringField(max_length=200)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # A misspelt key would otherwise be dropped silently and the person saved without it.
        unexpected = {}
        if isinstance(data, Mapping):
            unexpected = {
                key: [
                    "This field is read-only." if key in PersonOut.Meta.fields else "Unknown field."
                ]
                for key in data
                if key not in self.fields
            }
        try:
            values = super().to_internal_value(data)
        except serializers.ValidationError as error:
            raise serializers.ValidationError(unexpected | error.detail) from error
        if unexpected:
            raise serializers.ValidationError(unexpected)
        return values

    def validate_companyDomain(self, value: str) -> str:
        value = value.lower()
        if value and not _DOMAIN.match(value):
            raise serializers.ValidationError(
                "Enter a domain such as acme.com, without scheme or path."
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # On update the rule applies to the person as it will be, not to the changes alone.
        candidate = copy.copy(self.instance) if self.instance is not None else Person()
        for name, value in attrs.items():
            setattr(candidate, name, value)
        if not person_is_identifiable(candidate):
            raise serializers.ValidationError(IDENTITY_RULE)
        return attrs


class PersonListQuery(serializers.Serializer):
    search = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Words that must each appear (case-insensitive) in a name, the company name "
        "or domain, the LinkedIn URL or the title.",
    )
    companyDomain = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=253,
        help_text="Exact company domain, any letter case.",
    )


class PersonExportQuery(PersonListQuery):
    separator = serializers.ChoiceField(
        choices=["comma", "semicolon", "tab"],
        default="comma",
        help_text="Between cells; spreadsheets in many locales expect semicolon.",
    )
    bom = serializers.BooleanField(
        default=False,
        help_text="Start with a UTF-8 byte order mark, so Excel reads non-ASCII names right.",
    )


class PersonImportOut(serializers.Serializer):
    rows = serializers.IntegerField(help_text="Data rows in the file (blank lines not counted).")
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    ignoredColumns = serializers.ListField(
        child=serializers.CharField(), help_text="Header names the import does not know."
    )

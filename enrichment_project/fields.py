"""Input fields shared by the API serializers."""

import uuid
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

UUID4_SCHEMA = {
    "type": "string",
    "format": "uuid",
    # Version 4 of the RFC 4122 variant, in any letter case.
    "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}"
    "-[0-9a-fA-F]{12}$",
}


@extend_schema_field(UUID4_SCHEMA)
class UUID4Field(serializers.Field):
    """A UUID of version 4 in any letter case, the only kind of id this service issues."""

    default_error_messages = {"invalid": "Must be a UUID version 4, got {value!r}."}

    def to_internal_value(self, data: Any) -> uuid.UUID:
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        try:
            parsed = uuid.UUID(data)
        except ValueError:
            self.fail("invalid", value=data)
        if parsed.version != 4 or len(data) != 36:
            self.fail("invalid", value=data)
        return parsed

    def to_representation(self, value: uuid.UUID) -> str:
        return str(value)


def parse_uuid4(value: str) -> uuid.UUID | None:
    """The UUID v4 a path segment names, or None when it is not one."""
    try:
        return UUID4Field().to_internal_value(value)
    except serializers.ValidationError:
        return None

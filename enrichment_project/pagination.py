from typing import Any

from django.utils.dateparse import parse_datetime
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response


class NewestFirstCursorPagination(CursorPagination):
    """Stable pages over rows that keep arriving: `?cursor=` from the previous page's `next`."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200
    page_size_query_description = "Number of results per page."

    def get_page_size(self, request: Request) -> int:
        """DRF answers an out-of-range or malformed limit with the default page; the client
        would never learn its limit was ignored, so it is refused."""
        if self.page_size_query_param not in request.query_params:
            return self.page_size
        field = serializers.IntegerField(min_value=1, max_value=self.max_page_size)
        try:
            return field.run_validation(request.query_params[self.page_size_query_param])
        except serializers.ValidationError as error:
            raise serializers.ValidationError({self.page_size_query_param: error.detail}) from error

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(
                    minimum=1, maximum=self.max_page_size, default=self.page_size
                )
        return parameters

    def decode_cursor(self, request: Request) -> Cursor | None:
        """DRF trusts the position a cursor carries; a client can edit it, and a position that
        is not a date would reach the query and fail there."""
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            try:
                valid = parse_datetime(cursor.position) is not None
            except ValueError:  # well formatted but not a date, like 2026-13-45
                valid = False
            if not valid:
                raise NotFound(self.invalid_cursor_message)
        return cursor

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {"results": data, "next": self.get_next_link(), "previous": self.get_previous_link()}
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": "string", "nullable": True, "format": "uri"}
        return {
            "type": "object",
            "required": ["results", "next", "previous"],
            "properties": {"results": schema, "next": link, "previous": link},
        }

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.db.models import prefetch_related_objects
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser, get_encoding
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from enrichment_project.errors import NotFound, ServiceError, ValidationFailed
from enrichment_project.fields import parse_uuid4
from enrichment_project.openapi import JSON_BODY_ERRORS, error_responses, uuid4_path_parameter
from enrichment_project.pagination import NewestFirstCursorPagination
from persons.csv_files import (
    EXPORT_CHUNK_SIZE,
    SEPARATORS,
    csv_file_read,
    persons_csv_import,
    persons_csv_lines,
)
from persons.models import Person
from persons.selectors import person_get, persons_for_export, persons_list
from persons.serializers import (
    PersonExportQuery,
    PersonImportOut,
    PersonIn,
    PersonListQuery,
    PersonOut,
)
from persons.services import person_delete, person_update, persons_create

PERSON_ID = uuid4_path_parameter("person_id")


def _one_or_many(
    name: str, serializer: type[PersonIn] | type[PersonOut]
) -> PolymorphicProxySerializer:
    return PolymorphicProxySerializer(
        component_name=name,
        serializers=[serializer, serializer(many=True)],
        resource_type_field_name=None,
        many=False,
    )


def _render(persons: list[Person]) -> list[dict[str, Any]]:
    # One query loads the contact points of all of them, however many there are.
    prefetch_related_objects(persons, "contact_points")
    return PersonOut(persons, many=True).data


def _validated_items(data: Any) -> tuple[list[dict[str, Any]], bool]:
    """The validated persons of a create body and whether it was an array. All or nothing: an
    array's errors name each failing item by its index."""
    if not isinstance(data, list):
        body = PersonIn(data=data)
        body.is_valid(raise_exception=True)
        return [body.validated_data], False
    limit = settings.PERSONS_BULK_MAX
    if not data or len(data) > limit:
        raise ValidationFailed(
            f"Send 1 to {limit} persons in an array; got {len(data)}.",
            {"count": len(data), "maxItems": limit},
        )
    body = PersonIn(data=data, many=True)
    if not body.is_valid():
        # DRF keys the errors of a list by item index, failing items only.
        failing = {str(index): errors for index, errors in body.errors.items()}
        raise ValidationFailed(
            f"{len(failing)} of {len(data)} persons are invalid; none was created.",
            {"items": failing},
        )
    return body.validated_data, True


class PersonListApi(APIView):
    pagination_class = NewestFirstCursorPagination

    @extend_schema(
        request=_one_or_many("PersonCreate", PersonIn),
        responses={
            201: _one_or_many("PersonCreated", PersonOut),
            **error_responses(*JSON_BODY_ERRORS),
        },
    )
    def post(self, request: Request) -> Response:
        """Creates one person, or an array of up to 1,000 at once (all or none). Returns what
        was sent, in the same shape and order."""
        items, many = _validated_items(request.data)
        persons = persons_create(organization=request.auth.organization, items=items)
        out = _render(persons)
        return Response(out if many else out[0], status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[PersonListQuery],
        responses={200: PersonOut(many=True), **error_responses(400, 404)},
    )
    def get(self, request: Request) -> Response:
        """The organization's persons, newest first."""
        query = PersonListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        persons = persons_list(
            organization=request.auth.organization,
            search=query.validated_data.get("search", ""),
            company_domain=query.validated_data.get("companyDomain", ""),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(persons, request, view=self)
        return paginator.get_paginated_response(_render(page))


class PersonDetailApi(APIView):
    def _person(self, request: Request, person_id: str) -> Person:
        parsed = parse_uuid4(person_id)
        person = parsed and person_get(organization=request.auth.organization, person_id=parsed)
        if not person:
            raise NotFound("No such person.")
        return person

    @extend_schema(parameters=[PERSON_ID], responses={200: PersonOut, **error_responses(404)})
    def get(self, request: Request, person_id: str) -> Response:
        """One person of the organization, with the emails and phones found for it."""
        return Response(_render([self._person(request, person_id)])[0])

    @extend_schema(
        parameters=[PERSON_ID],
        request=PersonIn,
        responses={200: PersonOut, **error_responses(*JSON_BODY_ERRORS, 404)},
    )
    def patch(self, request: Request, person_id: str) -> Response:
        """Changes the fields sent; the person must still be identifiable afterwards."""
        person = self._person(request, person_id)
        body = PersonIn(person, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        person = person_update(person=person, changes=body.validated_data)
        return Response(_render([person])[0])

    @extend_schema(parameters=[PERSON_ID], responses={204: None, **error_responses(404)})
    def delete(self, request: Request, person_id: str) -> Response:
        """Deletes the person, its contact points and its enrichments (pending ones release
        their credits). The ledger keeps its entries."""
        person_delete(person=self._person(request, person_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class CsvTooLarge(ServiceError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "PAYLOAD_TOO_LARGE"


@dataclass(frozen=True)
class CsvUpload:
    content: bytes
    encoding: str


class CsvParser(BaseParser):
    """A `text/csv` body as bytes, with its own size limit (PERSONS_IMPORT_MAX_BYTES) in place
    of DATA_UPLOAD_MAX_MEMORY_SIZE; it never reads more than one byte past the limit."""

    media_type = "text/csv"

    def parse(
        self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None
    ) -> CsvUpload:
        limit = settings.PERSONS_IMPORT_MAX_BYTES
        request = parser_context["request"]
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        content = b"" if declared > limit else stream.read(limit + 1)
        if declared > limit or len(content) > limit:
            raise CsvTooLarge(
                f"The CSV file is larger than {limit} bytes; split it.", {"maxBytes": limit}
            )
        return CsvUpload(content=content, encoding=get_encoding(parser_context))


class CsvWithJsonErrors(BaseContentNegotiation):
    """The export is CSV whatever the Accept header says (the streamed answer is not rendered
    by DRF), and its errors are JSON."""

    def select_parser(self, request: Request, parsers: list[BaseParser]) -> BaseParser:
        return parsers[0]

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


class PersonImportApi(APIView):
    parser_classes = [CsvParser]
    # Read by the idempotency middleware, which hashes the body before the parser sees it.
    body_limit_setting = "PERSONS_IMPORT_MAX_BYTES"

    @extend_schema(
        request={"text/csv": OpenApiTypes.STR},
        responses={200: PersonImportOut, **error_responses(400, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        """Upserts up to 10,000 persons from a CSV file (all or nothing): a row with the LinkedIn
        URL of a stored person, else with its first name, last name and company domain (any
        letter case), updates it. Rejected rows are listed by line number in the 400."""
        upload = request.data
        if not isinstance(upload, CsvUpload):  # no body: DRF does not call the parser
            upload = CsvUpload(content=b"", encoding="utf-8")
        file = csv_file_read(upload.content, encoding=upload.encoding)
        counts = persons_csv_import(organization=request.auth.organization, file=file)
        out = {
            "rows": len(file.rows),
            "created": counts.created,
            "updated": counts.updated,
            "unchanged": counts.unchanged,
            "ignoredColumns": file.ignored_columns,
        }
        return Response(PersonImportOut(out).data)


def _blocks(lines: Iterator[str], size: int = 64 * 1024) -> Iterator[bytes]:
    """Lines joined into blocks of about `size` bytes: one write per block, not per person."""
    block: list[str] = []
    length = 0
    for line in lines:
        block.append(line)
        length += len(line)
        if length >= size:
            yield "".join(block).encode()
            block, length = [], 0
    if block:
        yield "".join(block).encode()


class PersonExportApi(APIView):
    content_negotiation_class = CsvWithJsonErrors

    @extend_schema(
        parameters=[PersonExportQuery],
        responses={(200, "text/csv"): OpenApiTypes.STR, **error_responses(400)},
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        """Streams the persons (those a search lists when `search` or `companyDomain` is given)
        as CSV, oldest first, with their found emails and phones."""
        query = PersonExportQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        persons = persons_for_export(
            organization=request.auth.organization,
            search=query.validated_data.get("search", ""),
            company_domain=query.validated_data.get("companyDomain", ""),
        )
        lines = persons_csv_lines(
            persons.iterator(chunk_size=EXPORT_CHUNK_SIZE),
            separator=SEPARATORS[query.validated_data["separator"]],
            bom=query.validated_data["bom"],
        )
        response = StreamingHttpResponse(_blocks(lines), content_type="text/csv; charset=utf-8")
        filename = f"persons-{timezone.now():%Y%m%d-%H%M%S}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

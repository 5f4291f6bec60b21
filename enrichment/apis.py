import uuid

from django.db.models import F, Window
from django.db.models.functions import RowNumber
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from enrichment.selectors import (
    enrichment_batch_get,
    enrichment_batches_of,
    enrichment_batches_summarize,
    enrichment_get,
    enrichment_latest,
    enrichments_of,
)
from enrichment.serializers import (
    BatchEnrichmentIn,
    BatchQueryIn,
    BulkEnrichmentIn,
    EnrichmentBatchOut,
    EnrichmentListQuery,
    EnrichmentOut,
    EstimateOut,
    FieldQuery,
    MaxAgeIn,
)
from enrichment.services import (
    EnrichmentRequest,
    enrichment_cancel,
    enrichments_estimate,
    enrichments_request,
    enrichments_request_by_search,
)
from enrichment_project.errors import NotFound, ValidationFailed
from enrichment_project.fields import parse_uuid4
from enrichment_project.openapi import JSON_BODY_ERRORS, error_responses, uuid4_path_parameter
from enrichment_project.pagination import NewestFirstCursorPagination

FIELD_PARAMETER = OpenApiParameter("field", enum=["emails", "phones"], required=True)
PERSON_ID = uuid4_path_parameter("person_id")
ENRICHMENT_ID = uuid4_path_parameter("enrichment_id")
BATCH_ID = uuid4_path_parameter("batch_id")


def _path_uuid(value: str, what: str) -> uuid.UUID:
    parsed = parse_uuid4(value)
    if parsed is None:
        raise ValidationFailed(f"The {what} in the path must be a UUID version 4.", {"id": value})
    return parsed


CREDIT_HEADERS = [
    OpenApiParameter(
        "Credits-Reserved",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=[200],
        description="Credits this request reserved for its new enrichments.",
    ),
    OpenApiParameter(
        "Credits-Available",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=[200],
        description="Credits available after this request.",
    ),
]


def _with_credit_headers(response: Response, requested: EnrichmentRequest) -> Response:
    response["Credits-Reserved"] = str(requested.credits_reserved)
    response["Credits-Available"] = str(requested.credits_available)
    return response


class BatchEnrichmentApi(APIView):
    @extend_schema(
        request=BatchEnrichmentIn,
        parameters=[
            *CREDIT_HEADERS,
            OpenApiParameter(
                "Enrichment-Batch-Id",
                OpenApiTypes.UUID,
                OpenApiParameter.HEADER,
                response=[200],
                description="The batch recorded: GET /api/v1/enrichment-batches/{id}.",
            ),
        ],
        responses={200: EnrichmentOut(many=True), **error_responses(*JSON_BODY_ERRORS, 402)},
    )
    def post(self, request: Request) -> Response:
        """Requests the enrichment of up to 100 persons: one object per distinct person, reused
        or new, in the order first requested."""
        body = BatchEnrichmentIn(data=request.data)
        body.is_valid(raise_exception=True)
        requested = enrichments_request(
            organization=request.auth.organization,
            user=request.user,
            person_ids=body.validated_data["personIds"],
            field=body.validated_data["field"],
            max_age=body.validated_data.get("maxAge"),
            record_batch=True,
        )
        response = Response(EnrichmentOut(requested.enrichments, many=True).data)
        response["Enrichment-Batch-Id"] = str(requested.batch.batch.pk)
        return _with_credit_headers(response, requested)


class BatchEstimateApi(APIView):
    @extend_schema(
        request=BatchEnrichmentIn,
        responses={200: EstimateOut, **error_responses(*JSON_BODY_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        """What the same batch request would reserve now; creates, reserves and queues nothing."""
        body = BatchEnrichmentIn(data=request.data)
        body.is_valid(raise_exception=True)
        estimate = enrichments_estimate(
            organization=request.auth.organization,
            person_ids=body.validated_data["personIds"],
            field=body.validated_data["field"],
            max_age=body.validated_data.get("maxAge"),
        )
        return Response(EstimateOut(estimate).data)


class BulkEnrichmentApi(APIView):
    @extend_schema(
        request=BulkEnrichmentIn,
        parameters=CREDIT_HEADERS,
        responses={200: EnrichmentBatchOut, **error_responses(*JSON_BODY_ERRORS, 402)},
    )
    def post(self, request: Request) -> Response:
        """The batch semantics for up to 1,000 persons, by ids or by a person search, in one
        transaction; answers the batch object."""
        body = BulkEnrichmentIn(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        common = {
            "organization": request.auth.organization,
            "user": request.user,
            "field": data["field"],
            "max_age": data.get("maxAge"),
        }
        if "personIds" in data:
            requested = enrichments_request(
                person_ids=data["personIds"], record_batch=True, **common
            )
        else:
            requested = enrichments_request_by_search(
                search=data["search"], limit=data.get("limit"), **common
            )
        return _with_credit_headers(Response(EnrichmentBatchOut(requested.batch).data), requested)


class EnrichmentBatchListApi(APIView):
    pagination_class = NewestFirstCursorPagination

    @extend_schema(responses={200: EnrichmentBatchOut(many=True), **error_responses(404)})
    def get(self, request: Request) -> Response:
        """The organization's batches, newest first."""
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            enrichment_batches_of(organization=request.auth.organization), request, view=self
        )
        summaries = enrichment_batches_summarize(batches=page)
        return paginator.get_paginated_response(EnrichmentBatchOut(summaries, many=True).data)


class EnrichmentBatchDetailApi(APIView):
    @extend_schema(
        parameters=[BATCH_ID], responses={200: EnrichmentBatchOut, **error_responses(404)}
    )
    def get(self, request: Request, batch_id: str) -> Response:
        """One batch with its live counts; `completedAt` is set once none is pending."""
        parsed = parse_uuid4(batch_id)
        summary = parsed and enrichment_batch_get(
            organization=request.auth.organization, batch_id=parsed
        )
        if not summary:
            raise NotFound("No such enrichment batch.")
        return Response(EnrichmentBatchOut(summary).data)


class PersonEnrichmentApi(APIView):
    def _field(self, request: Request) -> str:
        query = FieldQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        return query.validated_data["field"]

    @extend_schema(
        request=MaxAgeIn,
        parameters=[FIELD_PARAMETER, PERSON_ID, *CREDIT_HEADERS],
        responses={200: EnrichmentOut, **error_responses(*JSON_BODY_ERRORS, 402, 404)},
    )
    def post(self, request: Request, person_id: str) -> Response:
        """Requests the enrichment of one person: reused when one is pending or finished (at
        most `maxAge` seconds ago, when the optional body sets it)."""
        field = self._field(request)
        person_uuid = _path_uuid(person_id, "person id")
        body = MaxAgeIn(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            requested = enrichments_request(
                organization=request.auth.organization,
                user=request.user,
                person_ids=[person_uuid],
                field=field,
                max_age=body.validated_data.get("maxAge"),
            )
        except ValidationFailed as error:
            if "unknownPersonIds" in error.details:
                raise NotFound("No such person.") from error
            raise
        return _with_credit_headers(
            Response(EnrichmentOut(requested.enrichments[0]).data), requested
        )

    @extend_schema(
        parameters=[FIELD_PARAMETER, PERSON_ID],
        responses={200: EnrichmentOut, **error_responses(400, 404)},
    )
    def get(self, request: Request, person_id: str) -> Response:
        """The person's latest enrichment of the field."""
        field = self._field(request)
        enrichment = enrichment_latest(
            organization=request.auth.organization,
            person_id=_path_uuid(person_id, "person id"),
            field=field,
        )
        if enrichment is None:
            raise NotFound("This person has no enrichment of that field.")
        return Response(EnrichmentOut(enrichment).data)


class BatchQueryApi(APIView):
    @extend_schema(
        request=BatchQueryIn,
        responses={200: EnrichmentOut(many=True), **error_responses(*JSON_BODY_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        """The latest enrichment of each task that has one, in task order; others are left out."""
        body = BatchQueryIn(data=request.data)
        body.is_valid(raise_exception=True)
        tasks = list(
            dict.fromkeys(
                (task["entityId"], task["field"]) for task in body.validated_data["tasks"]
            )
        )
        latest = (
            enrichments_of(organization=request.auth.organization)
            .filter(person_id__in={person_id for person_id, _ in tasks})
            .annotate(
                recency=Window(
                    RowNumber(),
                    partition_by=[F("person_id"), F("field")],
                    order_by=[F("created_at").desc(), F("id").desc()],
                )
            )
            .filter(recency=1)
        )
        by_task = {(enrichment.person_id, enrichment.field): enrichment for enrichment in latest}
        found = [by_task[task] for task in tasks if task in by_task]
        return Response(EnrichmentOut(found, many=True).data)


class EnrichmentListApi(APIView):
    pagination_class = NewestFirstCursorPagination

    @extend_schema(
        parameters=[EnrichmentListQuery],
        responses={200: EnrichmentOut(many=True), **error_responses(400, 404)},
    )
    def get(self, request: Request) -> Response:
        """The organization's enrichments, newest first, filtered by status, field and person."""
        query = EnrichmentListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        enrichments = enrichments_of(organization=request.auth.organization)
        if "status" in filters:
            enrichments = enrichments.filter(status=filters["status"])
        if "field" in filters:
            enrichments = enrichments.filter(field=filters["field"])
        if "personId" in filters:
            enrichments = enrichments.filter(person_id=filters["personId"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(enrichments, request, view=self)
        return paginator.get_paginated_response(EnrichmentOut(page, many=True).data)


class EnrichmentDetailApi(APIView):
    @extend_schema(
        parameters=[ENRICHMENT_ID], responses={200: EnrichmentOut, **error_responses(404)}
    )
    def get(self, request: Request, enrichment_id: str) -> Response:
        """One enrichment of the organization."""
        parsed = parse_uuid4(enrichment_id)
        enrichment = parsed and enrichment_get(
            organization=request.auth.organization, enrichment_id=parsed
        )
        if not enrichment:
            raise NotFound("No such enrichment.")
        return Response(EnrichmentOut(enrichment).data)


class EnrichmentCancelApi(APIView):
    @extend_schema(
        request=None,
        parameters=[ENRICHMENT_ID],
        responses={200: EnrichmentOut, **error_responses(404, 409)},
    )
    def post(self, request: Request, enrichment_id: str) -> Response:
        """Cancels a pending enrichment and releases its reservation; 409 once it has ended."""
        parsed = parse_uuid4(enrichment_id)
        if parsed is None:
            raise NotFound("No such enrichment.")
        enrichment = enrichment_cancel(organization=request.auth.organization, enrichment_id=parsed)
        return Response(EnrichmentOut(enrichment).data)

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from enrichment_project.errors import NotFound
from enrichment_project.fields import parse_uuid4
from enrichment_project.openapi import JSON_BODY_ERRORS, error_responses, uuid4_path_parameter
from enrichment_project.pagination import NewestFirstCursorPagination
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.selectors import (
    webhook_deliveries_of,
    webhook_delivery_get,
    webhook_endpoint_get,
    webhook_endpoints_of,
)
from webhooks.serializers import (
    WebhookDeliveryOut,
    WebhookEndpointIn,
    WebhookEndpointOut,
    WebhookEndpointUpdateIn,
    WebhookEndpointWithSecretOut,
)
from webhooks.services import (
    webhook_delivery_retry,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)

ENDPOINT_ID = uuid4_path_parameter("endpoint_id")
DELIVERY_ID = uuid4_path_parameter("delivery_id")


def _endpoint(request: Request, endpoint_id: str) -> WebhookEndpoint:
    parsed = parse_uuid4(endpoint_id)
    endpoint = parsed and webhook_endpoint_get(
        organization=request.auth.organization, endpoint_id=parsed
    )
    if not endpoint:
        raise NotFound("No such webhook endpoint.")
    return endpoint


class WebhookEndpointListApi(APIView):
    pagination_class = NewestFirstCursorPagination

    @extend_schema(
        request=WebhookEndpointIn,
        responses={201: WebhookEndpointWithSecretOut, **error_responses(*JSON_BODY_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        """Creates an endpoint; the answer holds its signing secret, shown only this once."""
        body = WebhookEndpointIn(data=request.data)
        body.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_create(
            organization=request.auth.organization, **body.validated_data
        )
        return Response(WebhookEndpointWithSecretOut(endpoint).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: WebhookEndpointOut(many=True), **error_responses(404)})
    def get(self, request: Request) -> Response:
        """The organization's endpoints, newest first."""
        paginator = self.pagination_class()
        endpoints = webhook_endpoints_of(organization=request.auth.organization)
        page = paginator.paginate_queryset(endpoints, request, view=self)
        return paginator.get_paginated_response(WebhookEndpointOut(page, many=True).data)


class WebhookEndpointDetailApi(APIView):
    @extend_schema(
        parameters=[ENDPOINT_ID], responses={200: WebhookEndpointOut, **error_responses(404)}
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        """One endpoint, without its secret."""
        return Response(WebhookEndpointOut(_endpoint(request, endpoint_id)).data)

    @extend_schema(
        parameters=[ENDPOINT_ID],
        request=WebhookEndpointUpdateIn(partial=True),
        responses={200: WebhookEndpointOut, **error_responses(*JSON_BODY_ERRORS, 404)},
    )
    def patch(self, request: Request, endpoint_id: str) -> Response:
        """Changes the fields sent. `disabled: false` enables a disabled endpoint again."""
        endpoint = _endpoint(request, endpoint_id)
        body = WebhookEndpointUpdateIn(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_update(endpoint=endpoint, changes=body.validated_data)
        return Response(WebhookEndpointOut(endpoint).data)

    @extend_schema(parameters=[ENDPOINT_ID], responses={204: None, **error_responses(404)})
    def delete(self, request: Request, endpoint_id: str) -> Response:
        """Deletes the endpoint and its deliveries; nothing more is sent to it."""
        webhook_endpoint_delete(endpoint=_endpoint(request, endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookEndpointRotateSecretApi(APIView):
    @extend_schema(
        request=None,
        parameters=[ENDPOINT_ID],
        responses={200: WebhookEndpointWithSecretOut, **error_responses(404)},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        """A new secret, shown only this once; the previous one keeps signing for 24 hours."""
        endpoint = webhook_endpoint_rotate_secret(endpoint=_endpoint(request, endpoint_id))
        return Response(WebhookEndpointWithSecretOut(endpoint).data)


class WebhookDeliveryListApi(APIView):
    pagination_class = NewestFirstCursorPagination

    @extend_schema(
        parameters=[ENDPOINT_ID],
        responses={200: WebhookDeliveryOut(many=True), **error_responses(404)},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        """The endpoint's deliveries, newest first."""
        deliveries = webhook_deliveries_of(endpoint=_endpoint(request, endpoint_id))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(deliveries, request, view=self)
        return paginator.get_paginated_response(WebhookDeliveryOut(page, many=True).data)


class WebhookDeliveryRetryApi(APIView):
    @extend_schema(
        request=None,
        parameters=[ENDPOINT_ID, DELIVERY_ID],
        responses={202: WebhookDeliveryOut, **error_responses(404, 409)},
    )
    def post(self, request: Request, endpoint_id: str, delivery_id: str) -> Response:
        """Sends the delivery again as soon as a worker takes it; 409 if the endpoint is
        disabled."""
        endpoint = _endpoint(request, endpoint_id)
        parsed = parse_uuid4(delivery_id)
        delivery: WebhookDelivery | None = parsed and webhook_delivery_get(
            endpoint=endpoint, delivery_id=parsed
        )
        if not delivery:
            raise NotFound("No such delivery of this endpoint.")
        delivery = webhook_delivery_retry(delivery=delivery)
        return Response(WebhookDeliveryOut(delivery).data, status=status.HTTP_202_ACCEPTED)

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from credits.selectors import credit_account_get, credit_history
from credits.serializers import CreditTransactionOut, HistoryQuery
from enrichment_project.openapi import error_responses


class CreditBalanceApi(APIView):
    @extend_schema(
        responses={
            200: inline_serializer(
                "CreditBalance",
                {
                    "organizationId": serializers.UUIDField(),
                    "balance": serializers.IntegerField(),
                    "reserved": serializers.IntegerField(),
                    "available": serializers.IntegerField(),
                    "costs": serializers.DictField(child=serializers.IntegerField()),
                },
            ),
            **error_responses(),
        }
    )
    def get(self, request: Request) -> Response:
        """The organization's balance, reserved and available credits, and each field's price."""
        account = credit_account_get(organization=request.auth.organization)
        return Response(
            {
                "organizationId": str(account.organization_id),
                "balance": account.balance,
                "reserved": account.reserved,
                "available": account.available,
                "costs": settings.ENRICHMENT_CREDIT_COSTS,
            }
        )


class CreditHistoryApi(APIView):
    @extend_schema(
        parameters=[HistoryQuery],
        responses={
            200: inline_serializer(
                "CreditHistory",
                {
                    "transactions": CreditTransactionOut(many=True),
                    "count": serializers.IntegerField(),
                },
            ),
            **error_responses(400),
        },
    )
    def get(self, request: Request) -> Response:
        """The organization's ledger, newest first, within startDate and endDate."""
        query = HistoryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        entries = credit_history(
            organization=request.auth.organization,
            start=params.get("startDate"),
            end=params.get("endDate"),
        )
        page = entries[params["offset"] : params["offset"] + params["limit"]]
        return Response(
            {"transactions": CreditTransactionOut(page, many=True).data, "count": entries.count()}
        )

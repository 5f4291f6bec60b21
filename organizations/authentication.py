from typing import TYPE_CHECKING

from django.contrib.auth.models import AbstractBaseUser
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from enrichment_project.log_context import log_context_bind
from organizations.models import ApiKey
from organizations.services import api_key_authenticate

if TYPE_CHECKING:  # rest_framework.views imports this module through the settings
    from rest_framework.views import APIView


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <api key>` resolves the user and the organization."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, ApiKey] | None:
        # The idempotency middleware authenticates before the view does; the key is read once.
        http_request = request._request
        if not hasattr(http_request, "api_key_resolved"):
            http_request.api_key_resolved = self._resolve(request)
        return http_request.api_key_resolved

    def _resolve(self, request: Request) -> tuple[AbstractBaseUser, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw_key = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not raw_key.strip():
            raise exceptions.AuthenticationFailed(
                "Authorization header must be 'Bearer <api key>'."
            )
        resolved = api_key_authenticate(raw_key=raw_key.strip())
        if resolved is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        # Until the request ends (the request middleware resets the context).
        log_context_bind(organization_id=resolved[1].organization_id)
        return resolved

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class HasOrganization(permissions.BasePermission):
    """Every API view acts for the organization of the caller's API key."""

    def has_permission(self, request: Request, view: "APIView") -> bool:
        if not isinstance(request.auth, ApiKey):
            raise exceptions.NotAuthenticated(
                "An API key is required: 'Authorization: Bearer <key>'."
            )
        return True

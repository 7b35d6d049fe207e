"""API key authentication with scopes: `Authorization: Api-Key <key>`."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from .models import ApiKey

ALL_SCOPES = (
    "events:write",
    "contacts:read",
    "contacts:write",
    "messages:read",
    "messages:write",
    "touchpoints:read",
    "journeys:read",
    "surveys:read",
    "webhooks:manage",
)
KEYWORD = "Api-Key"


class ApiKeyAuthentication(BaseAuthentication):
    """Keys are stored hashed (djangorestframework-api-key); revoked or expired keys fail."""

    def authenticate(self, request: Request) -> tuple[None, ApiKey] | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme != KEYWORD or not key.strip():
            raise exceptions.AuthenticationFailed(f"Use 'Authorization: {KEYWORD} <key>'.")
        key = key.strip()
        try:
            api_key = ApiKey.objects.get_from_key(key)
        except ApiKey.DoesNotExist:
            raise exceptions.AuthenticationFailed("The API key is not valid.") from None
        if not api_key.is_valid(key):
            raise exceptions.AuthenticationFailed("The API key is revoked or expired.")
        return None, api_key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class HasScopedAPIKey(BasePermission):
    """An authenticated key holding the view's `required_scopes[method]`."""

    def has_permission(self, request: Request, view) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            raise exceptions.NotAuthenticated(f"Send 'Authorization: {KEYWORD} <key>'.")
        required = getattr(view, "required_scopes", {}).get(request.method)
        scopes = set(api_key.scopes or [])
        if required and required not in scopes and "*" not in scopes:
            raise exceptions.PermissionDenied(f"This API key lacks the scope {required!r}.")
        return True


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Requests per API key (counted in the shared cache: Redis in production), 429 with
    Retry-After when over `API_RATE_LIMIT`."""

    scope = "api_key"

    def get_cache_key(self, request: Request, view) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}

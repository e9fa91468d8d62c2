"""API keys: ``Authorization: Bearer <key>``. The chat path looks keys up in the routing
snapshot (no database query); DRF views use the authentication class below."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from ..models import ApiKey
from ..services import api_key_hash


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """For the admin API: a key whose user is staff authenticates as that user."""

    def authenticate(self, request):
        token = bearer_token(request.META.get("HTTP_AUTHORIZATION"))
        if token is None:
            return None
        key = ApiKey.objects.select_related("user").filter(key_hash=api_key_hash(token), is_active=True).first()
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        return key.user, key

    def authenticate_header(self, request):
        return "Bearer"

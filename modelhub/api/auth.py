"""API keys: ``Authorization: Bearer <key>``. The chat path looks keys up in the routing
snapshot (no database query); DRF views use the authentication class below."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import authentication, exceptions

from ..selectors import api_key_by_hash
from ..services import API_KEY_EXPIRED, api_key_hash


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """For the admin API: a key whose user is staff authenticates as that user. A rotated-out
    secret works until its grace ends; an expired one is refused, as on the chat path."""

    def authenticate(self, request):
        token = bearer_token(request.META.get("HTTP_AUTHORIZATION"))
        if token is None:
            return None
        digest = api_key_hash(token)
        key = api_key_by_hash(digest=digest)
        if key is None:
            raise exceptions.AuthenticationFailed()
        valid_until = key.valid_until(digest)
        if valid_until is not None and valid_until <= timezone.now():
            raise exceptions.AuthenticationFailed(API_KEY_EXPIRED)
        return key.user, key

    def authenticate_header(self, request):
        return "Bearer"

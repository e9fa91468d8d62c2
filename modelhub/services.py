"""Configuration writes. Each one is a plain function the admin, the admin API and the
management commands call; the registry's save signals bump the shared config version so
every worker obeys the change on its next request."""
from __future__ import annotations

import hashlib
import secrets

from django.db import transaction
from django.utils import timezone

from .models import AIModel, ApiKey, ModelHealth, Route, RouteEntry

API_KEY_PREFIX = "pam_"


@transaction.atomic
def route_set_primary(*, route: Route, model: AIModel) -> RouteEntry:
    """Put ``model`` at position 0 of ``route``, adding it to the chain if absent; the
    others keep their order behind it."""
    entries = list(route.entries.select_for_update().order_by("position", "id"))
    entry = next((e for e in entries if e.model_id == model.pk), None)
    if entry is None:
        entry = RouteEntry(route=route, model=model)
    others = [e for e in entries if e.pk != entry.pk]
    for position, other in enumerate(others, start=1):
        if other.position != position:
            other.position = position
            other.save(update_fields=["position"])
    entry.position, entry.enabled = 0, True
    entry.save()
    return entry


def model_set_enabled(*, model: AIModel, enabled: bool) -> None:
    model.enabled = enabled
    model.save(update_fields=["enabled"])


def route_entry_set_enabled(*, entry: RouteEntry, enabled: bool) -> None:
    entry.enabled = enabled
    entry.save(update_fields=["enabled"])


def health_reset(*, models) -> int:
    """Put models back in rotation at once: healthy, no cooldown, failure streak cleared."""
    count = ModelHealth.objects.filter(model__in=models).update(
        state=ModelHealth.State.HEALTHY, cooldown_until=None, consecutive_failures=0,
        updated_at=timezone.now())
    from .routing.version import config_version_bump

    config_version_bump()
    return count


def api_key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(*, name: str, user=None) -> tuple[ApiKey, str]:
    """Create a key; the secret is returned once and only its hash is stored."""
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        name=name, user=user, prefix=secret[:12], key_hash=api_key_hash(secret))
    return key, secret


def route_entries_renumber(*, route: Route) -> None:
    """Close gaps in a route's positions (after deletes), keeping the order."""
    for position, entry in enumerate(route.entries.order_by("position", "id")):
        if entry.position != position:
            RouteEntry.objects.filter(pk=entry.pk).update(position=position)


__all__ = [
    "route_set_primary", "model_set_enabled", "route_entry_set_enabled", "health_reset",
    "api_key_create", "api_key_hash", "route_entries_renumber",
]

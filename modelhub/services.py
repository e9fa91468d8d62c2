"""Configuration writes. Each one is a plain function the admin, the admin API and the
management commands call; the registry's save signals bump the shared config version so
every worker obeys the change on its next request."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from . import audit
from .audit import Actor, chain_change, instance_change
from .models import AIModel, ApiKey, ModelHealth, Route, RouteEntry
from .selectors import route_chain_previous

API_KEY_PREFIX = "pam_"
API_KEY_EXPIRED = "API key expired."


@transaction.atomic
def route_set_primary(*, route: Route, model: AIModel, by: Actor | None = None) -> RouteEntry:
    """Put ``model`` at position 0 of ``route``, adding it to the chain if absent; the
    others keep their order behind it. ``by``: record the change in the audit trail."""
    with chain_change(route=route, actor=by, action="set_primary", target=model.model_id):
        return _route_set_primary(route, model)


def _route_set_primary(route: Route, model: AIModel) -> RouteEntry:
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


def model_set_enabled(*, model: AIModel, enabled: bool, by: Actor | None = None) -> None:
    with instance_change(instance=model, actor=by, action="enable" if enabled else "disable"):
        model.enabled = enabled
        model.save(update_fields=["enabled"])


def route_entry_set_enabled(*, entry: RouteEntry, enabled: bool, by: Actor | None = None) -> None:
    action = "enable_entry" if enabled else "disable_entry"
    with chain_change(route=entry.route, actor=by, action=action, target=entry.model.model_id):
        entry.enabled = enabled
        entry.save(update_fields=["enabled"])


def health_reset(*, models, by: Actor | None = None) -> int:
    """Put models back in rotation at once: healthy, no cooldown, failure streak cleared."""
    if by is not None:
        _health_reset_record(models, by)
    count = ModelHealth.objects.filter(model__in=models).update(
        state=ModelHealth.State.HEALTHY,
        cooldown_until=None,
        consecutive_failures=0,
        cooldown_reason="",
        updated_at=timezone.now(),
    )
    from .routing.version import health_version_bump, version_bump_on_commit

    version_bump_on_commit(health_version_bump)  # a plain update sends no save signal
    return count


def api_key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _api_key_secret() -> tuple[str, str, str]:
    """A new secret, its shown prefix and its stored hash."""
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return secret, secret[:12], api_key_hash(secret)


@transaction.atomic
def api_key_create(
    *,
    name: str,
    user=None,
    routes=None,
    rpm_limit: int | None = None,
    daily_budget_usd: Decimal | None = None,
    expires_at: datetime | None = None,
    by: Actor | None = None,
) -> tuple[ApiKey, str]:
    """Create a key with its limits (``routes``: those it may use; none means all). The
    secret is returned once and only its hash is stored; the audit row has neither."""
    secret, prefix, digest = _api_key_secret()
    key = ApiKey(
        name=name,
        user=user,
        prefix=prefix,
        key_hash=digest,
        rpm_limit=rpm_limit,
        daily_budget_usd=daily_budget_usd,
        expires_at=expires_at,
    )
    with instance_change(instance=key, actor=by, action="add", state=audit.api_key_state):
        key.save(force_insert=True)
        if routes:
            key.routes.set(routes)
    return key, secret


@transaction.atomic
def api_key_update(
    *,
    key: ApiKey,
    name: str,
    user,
    is_active: bool,
    routes,
    rpm_limit: int | None,
    daily_budget_usd: Decimal | None,
    expires_at: datetime | None,
    by: Actor | None = None,
) -> None:
    """Set every editable field of a key (its secret is not one); ``routes`` empty means all."""
    with instance_change(instance=key, actor=by, action="change", state=audit.api_key_state):
        key.name, key.user, key.is_active = name, user, is_active
        key.rpm_limit, key.daily_budget_usd, key.expires_at = rpm_limit, daily_budget_usd, expires_at
        key.save(update_fields=["name", "user", "is_active", "rpm_limit", "daily_budget_usd", "expires_at"])
        key.routes.set(routes)


@transaction.atomic
def api_key_rotate(*, key: ApiKey, grace: timedelta, by: Actor | None = None) -> str:
    """Give the key a new secret, returned once; the one it replaces keeps working for
    ``grace`` (zero: it stops at once), so clients can switch without an outage. A secret
    replaced by an earlier rotation stops at once: only one previous secret is kept."""
    if grace < timedelta(0):
        raise ConfigError("The grace period cannot be negative.")
    current = ApiKey.objects.select_for_update().get(pk=key.pk)  # two rotations at once: one waits
    secret, prefix, digest = _api_key_secret()
    with instance_change(instance=key, actor=by, action="rotate", state=audit.api_key_state):
        key.previous_key_hash, key.previous_valid_until = current.key_hash, timezone.now() + grace
        key.prefix, key.key_hash = prefix, digest
        key.save(update_fields=["previous_key_hash", "previous_valid_until", "prefix", "key_hash"])
    return secret


@transaction.atomic
def api_key_set_active(*, key: ApiKey, active: bool, by: Actor | None = None) -> None:
    """Saved one by one (not a queryset update) so the save signal bumps the config
    version and every worker stops accepting the key on its next request."""
    action = "activate" if active else "deactivate"
    with instance_change(instance=key, actor=by, action=action, state=audit.api_key_state):
        key.is_active = active
        key.save(update_fields=["is_active"])


@transaction.atomic
def api_key_delete(*, key: ApiKey, by: Actor | None = None) -> None:
    with instance_change(instance=key, actor=by, action="delete", state=audit.api_key_state):
        key.delete()


def route_entries_renumber(*, route: Route) -> None:
    """Close gaps in a route's positions (after deletes), keeping the order."""
    for position, entry in enumerate(route.entries.order_by("position", "id")):
        if entry.position != position:
            RouteEntry.objects.filter(pk=entry.pk).update(position=position)


def _health_reset_record(models, by: Actor) -> None:
    rows = (
        ModelHealth.objects.filter(model__in=models)
        .exclude(state=ModelHealth.State.HEALTHY, consecutive_failures=0)
        .select_related("model")
    )
    before = {
        row.model.model_id: {"state": row.state, "cooldown_until": audit.state_of(row)["cooldown_until"]}
        for row in rows
    }
    audit.change_record(
        actor=by,
        action="reset_health",
        target_type="modelhealth",
        target=", ".join(sorted(before))[:255],
        before=before,
        after={name: {"state": "healthy"} for name in before},
    )


@transaction.atomic
def route_chain_restore(*, route: Route, by: Actor) -> list[dict]:
    """Put back the route's previous chain (entries, order, enabled flags); recorded, so a
    second restore undoes the first. Models deleted since are left out."""
    previous = route_chain_previous(route=route)
    if previous is None:
        raise ConfigError(f"No earlier chain of route '{route.name}' is recorded.")
    with chain_change(route=route, actor=by, action="restore_chain"):
        _route_chain_set(route, previous)
    return audit.chain_of(route)


def _route_chain_set(route: Route, chain: list[dict]) -> None:
    models = {f"{m.provider.name}/{m.model_id}": m for m in AIModel.objects.select_related("provider")}
    wanted = [(models[item["model"]], item["enabled"]) for item in chain if item["model"] in models]
    route.entries.exclude(model__in=[m for m, _ in wanted]).delete()
    for position, (model, enabled) in enumerate(wanted):
        RouteEntry.objects.update_or_create(
            route=route, model=model, defaults={"position": position, "enabled": enabled}
        )


def config_reload(*, force: bool = False, by: Actor | None = None) -> dict:
    """Every worker rebuilds its snapshot on its next request, re-reading the registry and
    its environment's overrides; ``force`` also ends every cooldown."""
    from .routing.version import config_version_bump, version_bump_on_commit
    from .runtime import runtime

    state = runtime().routing
    before = _overrides_in_force(state.current_sync())
    cleared = health_reset(models=AIModel.objects.all(), by=by) if force else 0
    version_bump_on_commit(config_version_bump)
    snapshot = state.current_sync()
    result = {
        "version": snapshot.version,
        "force": force,
        "cooldowns_cleared": cleared,
        "overrides": _overrides_in_force(snapshot),
    }
    if by is not None:
        audit.change_record(
            actor=by,
            action="reload",
            target_type="config",
            target="all workers",
            before={"overrides": before},
            after=result,
        )
    return result


def _overrides_in_force(snapshot) -> dict[str, str]:
    return {name: route.override for name, route in snapshot.routes.items() if route.override}


class ConfigError(ValueError):
    """A configuration change that cannot be made, with the reason for the operator."""


__all__ = [
    "route_set_primary",
    "model_set_enabled",
    "route_entry_set_enabled",
    "health_reset",
    "api_key_create",
    "api_key_update",
    "api_key_rotate",
    "api_key_set_active",
    "api_key_delete",
    "api_key_hash",
    "route_entries_renumber",
    "route_chain_restore",
    "config_reload",
    "ConfigError",
]

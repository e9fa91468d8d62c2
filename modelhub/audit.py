"""The audit trail of configuration changes: who, when, what, before and after.

Kept by hand on ``ConfigChange`` rather than with django-simple-history: history per
table would record a route's chain as many RouteEntry rows changing one by one (a
reorder is N row histories), where an operator thinks and restores in whole chains; and
reloads, cooldown resets and admin API calls are actions that change no row of their own.
One row per operator action, with the chain before and after, is what restore needs."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db import models

from .models import ApiKey, ConfigChange, Route

Source = ConfigChange.Source


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    source: str  # a ConfigChange.Source value


def actor_of(request, source: str) -> Actor:
    """The user behind a request, and the key when it came with one (never the key itself)."""
    user = getattr(request, "user", None)
    name = user.get_username() if user is not None and user.is_authenticated else ""
    key = getattr(request, "auth", None)
    if isinstance(key, ApiKey):
        name = f"{name} (key {key.name})" if name else f"key {key.name}"
    return Actor(name, source)


def _plain(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, models.Model):
        return str(value)
    return value


def state_of(instance: models.Model | None) -> dict | None:
    """The instance's concrete fields as JSON; a foreign key by its name. The registry holds
    no secrets (a provider stores the NAME of its key variable), so nothing is masked."""
    if instance is None:
        return None
    return {f.name: _plain(getattr(instance, f.name)) for f in instance._meta.concrete_fields if f.name != "id"}


def state_in_db(instance: models.Model) -> dict | None:
    if instance.pk is None:
        return None
    return state_of(type(instance)._default_manager.filter(pk=instance.pk).first())


def changed_only(before: dict | None, after: dict | None) -> tuple[dict | None, dict | None]:
    """For an edit, only the fields that changed; an add or delete keeps the whole state."""
    if before is None or after is None:
        return before, after
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def chain_of(route: Route) -> list[dict]:
    """A route's stored chain, primary first: [{"model": "provider/model_id", "enabled"}]."""
    entries = route.entries.select_related("model__provider").order_by("position", "id")
    return [{"model": f"{e.model.provider.name}/{e.model.model_id}", "enabled": e.enabled} for e in entries]


def change_record(
    *, actor: Actor, action: str, target_type: str = "", target: str = "", route: str = "", before=None, after=None
) -> ConfigChange:
    return ConfigChange.objects.create(
        actor=actor.name[:150],
        source=actor.source,
        action=action,
        target_type=target_type,
        target=str(target)[:255],
        route=route,
        before=before,
        after=after,
    )


@contextmanager
def chain_change(*, route: Route, actor: Actor | None, action: str, target: str = ""):
    """Record the route's chain before and after the block (nothing when actor is None)."""
    before = chain_of(route) if actor else None
    yield
    if actor:
        change_record(
            actor=actor,
            action=action,
            target_type="route",
            target=target or route.name,
            route=route.name,
            before={"chain": before},
            after={"chain": chain_of(route)},
        )


@contextmanager
def instance_change(*, instance: models.Model, actor: Actor | None, action: str):
    """Record the fields of ``instance`` that the block changed (nothing when actor is None)."""
    before = state_in_db(instance) if actor else None
    yield
    if actor:
        old, new = changed_only(before, state_of(instance))
        change_record(
            actor=actor,
            action=action,
            target_type=instance._meta.model_name,
            target=str(instance),
            before=old,
            after=new,
        )

"""The audit trail of configuration changes: who, when, what, before and after.

Kept by hand on ``ConfigChange`` rather than with django-simple-history: history per
table would record a route's chain as many RouteEntry rows changing one by one (a
reorder is N row histories), where an operator thinks and restores in whole chains; and
reloads, cooldown resets and admin API calls are actions that change no row of their own.
One row per operator action, with the chain before and after, is what restore needs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.db import models

from .models import ApiKey, ConfigChange, Route

Source = ConfigChange.Source

# Never recorded, by field name on any model: a key's hashes would let anyone holding the
# trail check guesses offline; the rest is bookkeeping the beat scheduler writes on every
# run (or Django on every save), not an operator's change.
UNRECORDED_FIELDS = frozenset({"key_hash", "previous_key_hash", "last_run_at", "total_run_count", "date_changed"})


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


def url_masked(url: str) -> str:
    """A webhook URL by its host and a digest: a change shows, the token in its path does not."""
    if not url:
        return ""
    digest = hashlib.sha256(url.encode()).hexdigest()[:8]
    return f"{urlsplit(url).hostname or '?'}/… #{digest}"


MASKED_FIELDS: dict[str, Callable[[str], str]] = {"webhook_url": url_masked}


def _recorded(field_name: str, value):
    mask = MASKED_FIELDS.get(field_name)
    return mask(value) if mask is not None else _plain(value)


def state_of(instance: models.Model | None) -> dict | None:
    """The instance's concrete fields as JSON; a foreign key by its name. A provider stores
    the NAME of its key variable; hashes and webhook URLs are left out or masked."""
    if instance is None:
        return None
    return {
        f.name: _recorded(f.name, getattr(instance, f.name))
        for f in instance._meta.concrete_fields
        if f.name != "id" and f.name not in UNRECORDED_FIELDS
    }


def api_key_state(key: ApiKey | None) -> dict | None:
    """What an API key's audit rows show, listed rather than derived so that nothing added
    to the model later (a hash, a secret) is recorded by default."""
    if key is None:
        return None
    return {
        "name": key.name,
        "prefix": key.prefix,
        "user": key.user.get_username() if key.user is not None else None,
        "is_active": key.is_active,
        "routes": sorted(key.routes.values_list("name", flat=True)),
        "rpm_limit": key.rpm_limit,
        "daily_budget_usd": _plain(key.daily_budget_usd),
        "expires_at": _plain(key.expires_at),
        "previous_valid_until": _plain(key.previous_valid_until),
    }


State = Callable[[Any], dict | None]  # state_of, api_key_state: a model (or None) to JSON


def state_in_db(instance: models.Model, state: State = state_of) -> dict | None:
    """The state as stored (not as the instance in hand has it, perhaps edited but unsaved,
    or with a decimal not yet at its field's scale)."""
    if instance.pk is None:
        return None
    return state(type(instance)._default_manager.filter(pk=instance.pk).first())


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
def instance_change(*, instance: models.Model, actor: Actor | None, action: str, state: State = state_of):
    """Record the fields of ``instance`` that the block changed (nothing when actor is None);
    an add starts from None, a delete ends at None."""
    before = state_in_db(instance, state) if actor else None
    yield
    if actor:
        old, new = changed_only(before, state_in_db(instance, state))
        change_record(
            actor=actor,
            action=action,
            target_type=instance._meta.model_name,
            target=str(instance),
            before=old,
            after=new,
        )

"""Changes to a rollout, by an operator (admin, the admin API) or by the analysis: start,
change its settings, pause, resume, advance, promote, roll back. Each one locks the row,
checks that its phase allows the change, records a ConfigChange under the route (the fields
it changed) and bumps the config version, so every process obeys it on its next request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import audit, services
from ..audit import Actor
from ..models import AIModel, Rollout, Route
from ..routing.version import config_version_bump, version_bump_on_commit

Phase = Rollout.Phase
EDITABLE = (
    "step_weights",
    "min_requests",
    "max_error_rate",
    "max_latency_ratio",
    "max_cost_ratio",
    "shadow_percent",
    "shadow_budget_usd",
)


class RolloutConflict(services.ConfigError):
    """The rollout is not in a phase that allows the change (409 in the admin API)."""


@contextmanager
def _recorded(rollout: Rollout, *, by: Actor, action: str) -> Iterator[None]:
    """Record what the block changed, under the route, and have every process reload."""
    before = audit.state_in_db(rollout, _state)
    yield
    old, new = audit.changed_only(before, audit.state_in_db(rollout, _state))
    audit.change_record(
        actor=by,
        action=action,
        target_type="rollout",
        target=f"#{rollout.pk} {rollout.candidate.model_id}",
        route=rollout.route.name,
        before=old,
        after=new,
    )
    version_bump_on_commit(config_version_bump)


def _state(rollout: Rollout | None) -> dict | None:
    """What the trail keeps of a rollout: its fields but the save time (the change's own)."""
    state = audit.state_of(rollout)
    return None if state is None else {k: v for k, v in state.items() if k != "updated_at"}


def rollout_locked(pk: int) -> Rollout:
    """The rollout, locked for the change (two processes deciding at once take turns)."""
    return Rollout.objects.select_for_update().select_related("route", "candidate__provider").get(pk=pk)


def _active(rollout: Rollout, doing: str, phases=Rollout.ACTIVE_PHASES) -> None:
    if rollout.phase not in phases:
        raise RolloutConflict(f"Rollout #{rollout.pk} is {rollout.phase}: it cannot {doing}.")


def _canary_step(rollout: Rollout, step: int) -> None:
    rollout.phase, rollout.step = Phase.CANARY, step
    rollout.weight = float(rollout.step_weights[step])
    rollout.step_started_at = timezone.now()


def _ended(rollout: Rollout, phase: str, reason: str) -> None:
    rollout.phase, rollout.weight, rollout.reason, rollout.ended_at = phase, 0.0, reason, timezone.now()


def rollout_start_check(*, route: Route, candidate: AIModel, phase: str) -> None:
    """Why ``candidate`` cannot start a rollout on ``route`` in ``phase``: a ValidationError
    (a RolloutConflict while the route has an active rollout)."""
    if phase not in (Phase.SHADOW, Phase.CANARY):
        raise ValidationError({"phase": "A rollout starts in shadow or canary."})
    if candidate.status == AIModel.Status.RETIRED or not candidate.provider.enabled:
        raise ValidationError({"candidate": f"'{candidate.model_id}' is retired or its provider is disabled."})
    primary = route.entries.filter(enabled=True).order_by("position", "id").first()
    if primary is not None and primary.model_id == candidate.pk:
        raise ValidationError({"candidate": f"'{candidate.model_id}' is the primary of route '{route.name}' already."})
    current = Rollout.objects.filter(route=route, phase__in=Rollout.ACTIVE_PHASES).first()
    if current is not None:
        raise RolloutConflict(f"Route '{route.name}' has an active rollout already (#{current.pk}): end it first.")


@transaction.atomic
def rollout_start(*, rollout: Rollout, by: Actor) -> Rollout:
    """Start ``rollout`` (unsaved: route, candidate, settings) in its phase, shadow or
    canary. A candidate that is disabled (discovery adds them so) is enabled: it must be
    callable; routing offers it only through the rollout."""
    route, candidate = rollout.route, rollout.candidate
    rollout_start_check(route=route, candidate=candidate, phase=rollout.phase)
    rollout.created_by = by.name[:150]
    rollout.full_clean(validate_constraints=False)
    if rollout.phase == Phase.CANARY:
        _canary_step(rollout, 0)
    if not candidate.enabled:
        services.model_set_enabled(model=candidate, enabled=True, by=by)
    try:
        with transaction.atomic(), _recorded(rollout, by=by, action="rollout_start"):
            rollout.save(force_insert=True)
    except IntegrityError:
        raise RolloutConflict(f"Route '{route.name}' has an active rollout already: end it first.") from None
    return rollout


@transaction.atomic
def rollout_update(*, rollout: Rollout, changes: dict, by: Actor) -> Rollout:
    """Change the settings of an active rollout (``EDITABLE``); in the canary phase the
    weight follows new step weights at once (the step kept, or the last one)."""
    rollout = rollout_locked(rollout.pk)
    _active(rollout, "be changed")
    with _recorded(rollout, by=by, action="rollout_change"):
        for name, value in changes.items():
            if name not in EDITABLE:
                raise ValidationError({name: "Not a setting of a rollout that can be changed."})
            setattr(rollout, name, value)
        rollout.full_clean(validate_constraints=False)
        if rollout.phase == Phase.CANARY:
            rollout.step = min(rollout.step, len(rollout.step_weights) - 1)
            rollout.weight = float(rollout.step_weights[rollout.step])
        rollout.save()
    return rollout


@transaction.atomic
def rollout_pause(*, rollout: Rollout, by: Actor, reason: str = "") -> Rollout:
    """No canary traffic and no shadow copies until resumed; the step keeps its counts."""
    rollout = rollout_locked(rollout.pk)
    _active(rollout, "be paused", (Phase.SHADOW, Phase.CANARY))
    with _recorded(rollout, by=by, action="rollout_pause"):
        rollout.phase, rollout.weight, rollout.reason = Phase.PAUSED, 0.0, reason or f"Paused by {by.name}."
        rollout.save()
    return rollout


@transaction.atomic
def rollout_resume(*, rollout: Rollout, by: Actor) -> Rollout:
    """Back to the phase it was paused in: canary at its step once a canary step started,
    shadow otherwise."""
    rollout = rollout_locked(rollout.pk)
    _active(rollout, "be resumed", (Phase.PAUSED,))
    with _recorded(rollout, by=by, action="rollout_resume"):
        if rollout.step_started_at is None:
            rollout.phase = Phase.SHADOW
        else:
            rollout.phase, rollout.weight = Phase.CANARY, float(rollout.step_weights[rollout.step])
        rollout.reason = f"Resumed by {by.name}."
        rollout.save()
    return rollout


@transaction.atomic
def rollout_advance(*, rollout: Rollout, by: Actor, reason: str = "") -> Rollout:
    """The next step now: shadow -> canary step 0 -> ... -> promotion after the last step."""
    return advance_locked(rollout_locked(rollout.pk), by, reason or f"Advanced by {by.name}.")


def advance_locked(rollout: Rollout, by: Actor, reason: str) -> Rollout:
    _active(rollout, "advance (resume it first)", (Phase.SHADOW, Phase.CANARY))
    if rollout.phase == Phase.CANARY and rollout.step >= len(rollout.step_weights) - 1:
        return _promote(rollout, by, reason)
    action = "rollout_canary" if rollout.phase == Phase.SHADOW else "rollout_step"
    with _recorded(rollout, by=by, action=action):
        _canary_step(rollout, 0 if rollout.phase == Phase.SHADOW else rollout.step + 1)
        rollout.reason = reason
        rollout.save()
    return rollout


@transaction.atomic
def rollout_promote(*, rollout: Rollout, by: Actor, reason: str = "") -> Rollout:
    """Make the candidate the route's primary now, whatever the phase's progress."""
    locked = rollout_locked(rollout.pk)
    _active(locked, "be promoted")
    return _promote(locked, by, reason or f"Promoted by {by.name}.")


def _promote(rollout: Rollout, by: Actor, reason: str) -> Rollout:
    """The candidate becomes the route's primary through set-primary (audited as every
    set-primary is) and, a candidate no more, an active model."""
    candidate = rollout.candidate
    services.route_set_primary(route=rollout.route, model=candidate, by=by)
    if candidate.status == AIModel.Status.CANDIDATE:
        with audit.instance_change(instance=candidate, actor=by, action="rollout_promote"):
            candidate.status = AIModel.Status.ACTIVE
            candidate.save(update_fields=["status"])
    with _recorded(rollout, by=by, action="rollout_promote"):
        _ended(rollout, Phase.PROMOTED, reason)
        rollout.save()
    return rollout


@transaction.atomic
def rollout_rollback(*, rollout: Rollout, by: Actor, reason: str = "") -> Rollout:
    """End the rollout at once: no more traffic to the candidate."""
    return rollback_locked(rollout_locked(rollout.pk), by, reason or f"Rolled back by {by.name}.")


def rollback_locked(rollout: Rollout, by: Actor, reason: str) -> Rollout:
    _active(rollout, "be rolled back")
    with _recorded(rollout, by=by, action="rollout_rollback"):
        _ended(rollout, Phase.ROLLED_BACK, reason)
        rollout.save()
    return rollout

"""Circuit breaker per model: named constants plus one transition function.

States: healthy -> cooling_down (on a failure that is the model's fault) -> half_open
(once the cooldown has passed: the next call is a trial) -> healthy on success, or back
to cooling_down. Times are wall-clock epochs so that every worker reads them alike."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from django.conf import settings

from ..providers.base import ModelSpec, ProviderError

HEALTHY = "healthy"
COOLING_DOWN = "cooling_down"
HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Health:
    state: str = HEALTHY
    cooldown_until: float = 0.0
    consecutive_failures: int = 0
    last_error_kind: str = ""
    last_error_message: str = ""
    changed_at: float = 0.0

    def available(self, now: float) -> bool:
        return self.cooldown_until <= now

    def effective_state(self, now: float) -> str:
        if self.state == COOLING_DOWN and self.cooldown_until <= now:
            return HALF_OPEN
        return self.state


HEALTHY_DEFAULT = Health()


def health_transition(
    health: Health, *, error: ProviderError | None, now: float, cooldown_seconds: float
) -> Health | None:
    """The next state after an attempt, or None when nothing changes (a success on a
    healthy model: the hot path writes nothing). A provider's Retry-After wins over the
    default cooldown."""
    if error is None:
        if health.state == HEALTHY and health.consecutive_failures == 0:
            return None
        return Health(changed_at=now)
    if not error.retryable:
        return None
    wait = cooldown_seconds if error.retry_after is None else error.retry_after
    if wait <= 0:  # breaker off: every request tries the model again
        return None
    return replace(
        health,
        state=COOLING_DOWN,
        cooldown_until=now + wait,
        consecutive_failures=health.consecutive_failures + 1,
        last_error_kind=error.kind.value,
        last_error_message=error.message[:500],
        changed_at=now,
    )


class HealthBoard:
    """This worker's view of every model's health, keyed by model pk. Updated at once by
    its own attempts; merged with the shared record whenever the health version moves (or
    the configuration reloads)."""

    def __init__(self):
        self.states: dict[int, Health] = {}

    def get(self, pk: int) -> Health:
        return self.states.get(pk, HEALTHY_DEFAULT)

    def set(self, pk: int, health: Health) -> None:
        self.states[pk] = health

    def merge(self, shared: dict[int, Health]) -> None:
        """Keep whichever of ours and the shared record changed last."""
        merged = dict(shared)
        for pk, mine in self.states.items():
            theirs = shared.get(pk)
            if theirs is None or mine.changed_at > theirs.changed_at:
                merged[pk] = mine
        self.states = merged


def health_record(model: ModelSpec, error: ProviderError | None) -> None:
    """Apply an attempt's outcome to the model's circuit breaker, here and (if it changed)
    for every worker: the stored row bumps the health version, not the config version."""
    from ..runtime import runtime

    board = runtime().routing.board
    changed = health_transition(
        board.get(model.pk), error=error, now=time.time(), cooldown_seconds=settings.MODELHUB["COOLDOWN_SECONDS"]
    )
    if changed is not None:
        board.set(model.pk, changed)
        runtime().ledger.submit_health(model.pk, changed)

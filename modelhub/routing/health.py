"""Circuit breaker per model: named constants plus one transition function.

States: healthy -> cooling_down (on a failure that is the model's fault) -> half_open
(once the cooldown has passed: the next call is a trial, one at a time across processes,
see ``trial``) -> healthy on success, or back to cooling_down for longer. Times are
wall-clock epochs so that every worker reads them alike."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from django.conf import settings

from ..providers.base import ModelSpec, ProviderError

log = logging.getLogger("modelhub.routing")

HEALTHY = "healthy"
COOLING_DOWN = "cooling_down"
HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Health:
    state: str = HEALTHY
    cooldown_until: float = 0.0
    consecutive_failures: int = 0  # times taken out in a row: the cooldown's multiplier
    last_error_kind: str = ""
    last_error_message: str = ""
    changed_at: float = 0.0
    cooldown_reason: str = ""  # the breaker's decision, in words, for the operator

    def available(self, now: float) -> bool:
        return self.cooldown_until <= now

    def effective_state(self, now: float) -> str:
        if self.state == COOLING_DOWN and self.cooldown_until <= now:
            return HALF_OPEN
        return self.state

    def cooling(self, now: float) -> bool:
        return self.state == COOLING_DOWN and self.cooldown_until > now


HEALTHY_DEFAULT = Health()


def retry_after_taken(retry_after: float | None) -> float | None:
    """The provider's Retry-After when it sets the cooldown; not a 0 ("retry now", or an
    HTTP date already past), which says nothing of how long: the breaker's own applies."""
    return retry_after if retry_after is not None and retry_after > 0 else None


def cooldown_wait(*, ejections: int, retry_after: float | None, base: float, cap: float) -> float:
    """How long a model sits out: the provider's Retry-After when it gave one, else the base
    cooldown times the times it was taken out in a row (Envoy's outlier ejection); capped
    either way, so that no provider's answer keeps a model out longer than the breaker would."""
    taken = retry_after_taken(retry_after)
    return min(taken if taken is not None else base * ejections, cap)


def cooldown_reason(
    *, kind: str, ejections: int, retry_after: float | None, base: float, cap: float, trial: bool, kept: bool
) -> str:
    """Why the model sits out as long as it does, as admin shows it."""
    taken = retry_after_taken(retry_after)
    if taken is not None:
        length = f"the provider's Retry-After, {taken:.15g} s" + (f", capped at {cap:g} s" if taken > cap else "")
    elif base * ejections > cap:
        length = f"{base:g} s × {ejections} times in a row, capped at {cap:g} s"
    else:
        length = f"{base:g} s × {ejections} time{'s' if ejections > 1 else ''} in a row = {base * ejections:g} s"
    if retry_after is not None and taken is None:
        length += " (its Retry-After of 0 s not taken)"
    cause = f"its trial request failed ({kind})" if trial else kind
    reason = f"{cause}: {length}"
    if kept:
        reason += "; a later deadline already set was kept"
    return reason[:300]


def health_transition(
    health: Health,
    *,
    error: ProviderError | None,
    now: float,
    cooldown_seconds: float,
    cooldown_max_seconds: float = float("inf"),
) -> Health | None:
    """The next state after an attempt, or None when nothing changes (a success on a
    healthy model: the hot path writes nothing). A failure takes the model out once more
    (a longer cooldown); one while it is still cooling down (a request already under way)
    does not, and keeps whichever deadline is later."""
    if error is None:
        if health.state == HEALTHY and health.consecutive_failures == 0:
            return None
        return Health(changed_at=now)
    if not error.retryable:
        return None
    cooling = health.cooling(now)
    ejections = max(1, health.consecutive_failures) if cooling else health.consecutive_failures + 1
    wait = cooldown_wait(
        ejections=ejections, retry_after=error.retry_after, base=cooldown_seconds, cap=cooldown_max_seconds
    )
    if wait <= 0:  # breaker off (COOLDOWN_SECONDS 0), no Retry-After to follow: every request tries it
        return None
    # in milliseconds: the stored deadline reads back the same in every worker (trial key)
    until = round(now + wait, 3)
    reason = cooldown_reason(
        kind=error.kind.value,
        ejections=ejections,
        retry_after=error.retry_after,
        base=cooldown_seconds,
        cap=cooldown_max_seconds,
        trial=health.state == COOLING_DOWN and not cooling,
        kept=health.cooldown_until > until,
    )
    return replace(
        health,
        state=COOLING_DOWN,
        cooldown_until=max(health.cooldown_until, until),
        consecutive_failures=ejections,
        last_error_kind=error.kind.value,
        last_error_message=error.message[:500],
        changed_at=now,
        cooldown_reason=reason,
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


def health_record(model: ModelSpec, error: ProviderError | None) -> bool:
    """Apply an attempt's outcome to the model's circuit breaker, here and (if it changed)
    for every worker: the stored row bumps the health version, not the config version.
    True when the model's health changed."""
    from ..runtime import runtime

    board, hub, now = runtime().routing.board, settings.MODELHUB, time.time()
    changed = health_transition(
        board.get(model.pk),
        error=error,
        now=now,
        cooldown_seconds=hub["COOLDOWN_SECONDS"],
        cooldown_max_seconds=hub["COOLDOWN_MAX_SECONDS"],
    )
    if changed is None:
        return False
    if changed.state == COOLING_DOWN:
        log.warning(
            "model=%s cooling down %.1f s (%s): %s",
            model.model_id,
            changed.cooldown_until - now,
            changed.cooldown_reason,
            changed.last_error_message,
        )
    board.set(model.pk, changed)
    runtime().ledger.submit_health(model.pk, changed)
    return True

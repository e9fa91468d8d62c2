"""What the router reports, on the request's path: per attempt (each one that reached a
provider: the ledger's rows), per failover and per request end, the metrics and one log line.

Attempt lines are INFO when the attempt answered and WARNING when it failed; request lines
are INFO when answered, WARNING otherwise. Their fields (JSON keys, or ``key=value``):

attempt  request_id route model provider attempt (its number) position (in the chain)
         outcome latency_ms tokens_in tokens_out cost_usd stream, and where they apply:
         strategy arm tier category, ttft_ms (a stream), error (a failure), probe
request  request_id route model provider (the answering model, or the last one tried;
         "" when none was called) outcome attempts (those that reached a provider)
         latency_ms tokens_in tokens_out cost_usd (all attempts) stream, and where they
         apply: strategy arm tier category, source (answered: primary | fallback_N)

A failover shows as a failed attempt's line (WARNING) then the next attempt's.

Nothing here may fail a request: a recording error is logged (once) and dropped."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING

from .logs import event_log
from .metrics import hub_metrics

if TYPE_CHECKING:
    from ..routing.router import Attempt, Failover

log = logging.getLogger("modelhub.routing")
OK = "ok"
SHADOW = "shadow"
_failing = False


def attempt_reported(
    failover: Failover, attempt: Attempt, number: int, tokens: tuple[int, int], cost: Decimal, ttft_ms: int | None
) -> None:
    """One attempt that reached a provider (its ledger row is queued)."""
    model = attempt.model
    try:
        metrics = hub_metrics()
        if failover.probe:
            metrics.probes.labels(model.provider.name, model.model_id, attempt.outcome).inc()
        else:
            key = (failover.ledger_route, model.provider.name, model.model_id, attempt.outcome)
            ttft = None if ttft_ms is None else ttft_ms / 1000
            metrics.attempt(key, attempt.latency_ms / 1000, ttft, tokens, float(cost))
    except Exception as exc:  # noqa: BLE001 - metrics are not worth a request
        _recording_failed(exc)
    fields = {
        "request_id": failover.request_id,
        "route": failover.ledger_route,
        "model": model.model_id,
        "provider": model.provider.name,
        "attempt": number,
        "position": attempt.position,
        "outcome": attempt.outcome,
        "latency_ms": attempt.latency_ms,
        "tokens_in": tokens[0],
        "tokens_out": tokens[1],
        "cost_usd": float(cost),
        "stream": failover.stream,
        **_routing(failover),
    }
    if ttft_ms is not None:
        fields["ttft_ms"] = ttft_ms
    if attempt.error is not None:
        fields["error"] = attempt.error.message
    if failover.probe:
        fields["probe"] = True
    event_log(log, logging.INFO if attempt.outcome == OK else logging.WARNING, "attempt", fields)


def failover_reported(failover: Failover, failed: Attempt) -> None:
    """The request moves on from ``failed`` to the next model."""
    model = failed.model
    try:
        key = (failover.ledger_route, model.provider.name, model.model_id, failed.outcome)
        hub_metrics().failovers.labels(*key).inc()
    except Exception as exc:  # noqa: BLE001
        _recording_failed(exc)


def request_reported(failover: Failover, outcome: str, seconds: float) -> None:
    """The request's end: answered ("ok"), or why not."""
    last = failover.attempts[-1] if failover.attempts else None
    model = last.model if last is not None else None
    provider, model_id = (model.provider.name, model.model_id) if model is not None else ("", "")
    choice = failover.choice
    try:
        if choice is None or choice.arm != SHADOW:  # a rollout's shadow copy is no client's request
            hub_metrics().request((failover.ledger_route, provider, model_id, outcome), seconds)
    except Exception as exc:  # noqa: BLE001
        _recording_failed(exc)
    fields = {
        "request_id": failover.request_id,
        "route": failover.ledger_route,
        "model": model_id,
        "provider": provider,
        "outcome": outcome,
        "attempts": failover.calls,
        "latency_ms": int(seconds * 1000),
        "tokens_in": failover.tokens[0],
        "tokens_out": failover.tokens[1],
        "cost_usd": float(failover.cost),
        "stream": failover.stream,
        **_routing(failover),
    }
    if outcome == OK and last is not None:
        fields["source"] = _source(last)
    event_log(log, logging.INFO if outcome == OK else logging.WARNING, "request", fields)


def inflight_changed(change: int) -> None:
    """A chat request began (+1) or ended (-1) in this process."""
    try:
        hub_metrics().inflight.inc(change)
    except Exception as exc:  # noqa: BLE001
        _recording_failed(exc)


def overload_reported() -> None:
    try:
        hub_metrics().overloaded.inc()
    except Exception as exc:  # noqa: BLE001
        _recording_failed(exc)


def _routing(failover: Failover) -> dict:
    choice = failover.choice
    if choice is None:
        return {}
    fields = {"strategy": choice.strategy, "arm": choice.arm}
    if choice.classification is not None:
        fields.update(tier=choice.classification.tier, category=choice.classification.category)
    return fields


def _source(attempt: Attempt) -> str:
    return "primary" if attempt.position == 0 else f"fallback_{attempt.position}"


def _recording_failed(exc: Exception) -> None:
    global _failing
    if not _failing:
        _failing = True
        log.warning("metrics not recorded (logged once): %s", exc)

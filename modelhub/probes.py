"""Health probes: one small real request per model that an enabled route uses.

A probe's outcome goes through the same circuit breaker as a client's attempt, so a model
cooling down whose probe passes is healthy again before its cooldown ends (a success
resets any state), and a healthy model whose probe fails starts cooling down. Each probe
takes a lock in the shared cache first: however many workers run the schedule, a model is
probed once per PROBE_LOCK_SECONDS."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache

from .models import ModelHealth
from .providers.base import ChatRequest, ChatResult, Message, ModelSpec, ProviderError
from .routing.router import Failover, RoutingError
from .routing.snapshot import RouteSpec, Snapshot
from .runtime import runtime

# Enough for a reasoning model to answer at all (the adapter sends max_completion_tokens
# to GPT-5), small enough to cost next to nothing.
PROBE_REQUEST = ChatRequest(messages=(Message("user", "Reply with the word OK."),), max_tokens=16)
LOCK_PREFIX = "modelhub:probe-lock:"
SKIPPED = "skipped"


@dataclass(slots=True)
class ProbeResult:
    model: ModelSpec
    outcome: str  # "ok", an error kind, or "skipped"
    latency_ms: int = 0
    detail: str = ""
    result: ChatResult | None = None
    error: ProviderError | None = None
    state: str = ""  # the model's health after the probe


def probe_targets(*, snapshot: Snapshot) -> list[ModelSpec]:
    """Each enabled model in the chain of an enabled route, once."""
    models: dict[int, ModelSpec] = {}
    for route in snapshot.routes.values():
        if route.enabled:
            for model in route.chain:
                models.setdefault(model.pk, model)
    return sorted(models.values(), key=lambda m: (m.provider.name, m.model_id))


def probe_lock_take(*, model: ModelSpec) -> bool:
    """True for the one worker that may probe ``model`` in this interval (SET NX + expiry)."""
    return cache.add(f"{LOCK_PREFIX}{model.pk}", "1", timeout=settings.MODELHUB["PROBE_LOCK_SECONDS"])


def _skip_reason(model: ModelSpec, force: bool) -> str | None:
    if not model.provider.api_key:
        return f"{model.provider.api_key_env} is not set"
    if not probe_lock_take(model=model) and not force:
        return "probed recently (another worker holds the lock)"
    return None


def probes_run(*, force: bool = False) -> list[ProbeResult]:
    """One probe round; ``force`` probes also models another worker probed recently."""
    snapshot = runtime().routing.current_sync()
    results, due = [], []
    for model in probe_targets(snapshot=snapshot):
        reason = _skip_reason(model, force)
        results.append(ProbeResult(model, SKIPPED, detail=reason) if reason else None)
        if reason is None:
            due.append(model)
    probed = iter(asyncio.run(_probe_all(due)))
    results = [r if r is not None else next(probed) for r in results]
    runtime().ledger.flush()
    _last_probe_mark([r for r in results if r.outcome != SKIPPED])
    return results


async def _probe_all(models: list[ModelSpec]) -> list[ProbeResult]:
    try:
        return list(await asyncio.gather(*(_probe_one(m) for m in models)))
    finally:
        await runtime().adapters.close()  # this loop ends with the round


async def _probe_one(model: ModelSpec) -> ProbeResult:
    """One probe through the router's loop, on a one-model route: the same deadlines,
    breaker and ledger row (marked as a probe) as a client's attempt."""
    failover = Failover(
        RouteSpec(name="", enabled=True, chain=(model,)), key=None, request_id=uuid.uuid4().hex, probe=True
    )
    chat = runtime().adapters.get(model.provider).chat
    try:
        success = await failover.run(lambda m: chat(m, PROBE_REQUEST))
    except RoutingError:
        attempt = failover.attempts[-1]
        error = attempt.error
        return _result(model, attempt.outcome, attempt.latency_ms, error.message if error else "", error=error)
    result = success.value
    failover.answered(success, (result.input_tokens, result.output_tokens))
    return _result(model, "ok", failover.attempts[-1].latency_ms, result=result)


def _result(model: ModelSpec, outcome: str, latency_ms: int, detail: str = "", **fields) -> ProbeResult:
    state = runtime().routing.board.get(model.pk).effective_state(time.time())
    return ProbeResult(model, outcome, latency_ms, detail, state=state, **fields)


def _last_probe_mark(probed: list[ProbeResult]) -> None:
    """Stamp last_probe_at (a plain update: no config reload for a timestamp)."""
    now = datetime.now(UTC)
    pks = {r.model.pk for r in probed}
    existing = set(ModelHealth.objects.filter(model_id__in=pks).values_list("model_id", flat=True))
    ModelHealth.objects.filter(model_id__in=existing).update(last_probe_at=now)
    passed = {r.model.pk for r in probed if r.outcome == "ok"} - existing
    ModelHealth.objects.bulk_create(  # never failed, so healthy: only the stamp is new
        [ModelHealth(model_id=pk, last_probe_at=now, last_success_at=now) for pk in passed], ignore_conflicts=True
    )

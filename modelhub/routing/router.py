"""Failover along a route's chain. The only code that knows about fallback."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from django.conf import settings

from ..ledger import ledger
from ..models import UsageRecord
from ..providers.base import ChatRequest, ChatResult, ErrorKind, ModelSpec, ProviderError
from ..providers.registry import adapter_for
from .health import HealthBoard, health_transition
from .snapshot import KeySpec, RouteSpec, Snapshot
from .state import routing_state

log = logging.getLogger("modelhub.routing")
MILLION = Decimal(1_000_000)


class RoutingError(Exception):
    """A request the router cannot answer; ``status`` is the HTTP status to give."""

    status = 503
    code = "routing_error"

    def __init__(self, message: str, *, attempts=(), details=None):
        super().__init__(message)
        self.message, self.attempts, self.details = message, list(attempts), details


class UnknownRoute(RoutingError):
    status, code = 404, "unknown_route"


class RouteUnavailable(RoutingError):
    status, code = 503, "route_unavailable"


class CallerError(RoutingError):
    """The provider refused the caller's own request (a 400): no other model would differ."""

    status, code = 400, "provider_rejected_request"


class ChainExhausted(RoutingError):
    status, code = 503, "all_models_failed"


@dataclass(slots=True)
class Attempt:
    model: ModelSpec
    position: int
    outcome: str
    latency_ms: int
    error: ProviderError | None = None

    def as_dict(self) -> dict:
        data = {"model": self.model.model_id, "provider": self.model.provider.name,
                "outcome": self.outcome, "latency_ms": self.latency_ms}
        if self.error is not None:
            data["error"] = self.error.message
        return data


@dataclass(slots=True)
class RouteAnswer:
    result: ChatResult
    model: ModelSpec
    route: RouteSpec
    position: int
    cost: Decimal
    attempts: list[Attempt]

    @property
    def source(self) -> str:
        return "primary" if self.position == 0 else f"fallback_{self.position}"


def cost_of(model: ModelSpec, input_tokens: int, output_tokens: int) -> Decimal:
    """Exact cost from provider-reported tokens; never rounded here."""
    return (input_tokens * model.input_price_per_mtok
            + output_tokens * model.output_price_per_mtok) / MILLION


def route_lookup(snapshot: Snapshot, name: str) -> RouteSpec:
    route = snapshot.routes.get(name)
    if route is None:
        model = snapshot.models.get(name)
        if model is None:
            raise UnknownRoute(f"Unknown route or model '{name}'.")
        return RouteSpec(name=name, enabled=True, chain=(model,))
    if not route.enabled:
        raise RouteUnavailable(f"Route '{name}' is disabled.")
    if not route.chain:
        raise RouteUnavailable(f"Route '{name}' has no enabled model.")
    return route


def attempt_plan(route: RouteSpec, board: HealthBoard, now: float) -> list[tuple[int, ModelSpec]]:
    """The chain minus models cooling down; when all are, the one that recovers soonest."""
    plan = [(i, m) for i, m in enumerate(route.chain) if board.get(m.pk).available(now)]
    if plan:
        return plan
    soonest = min(range(len(route.chain)), key=lambda i: board.get(route.chain[i].pk).cooldown_until)
    return [(soonest, route.chain[soonest])]


async def route_chat(*, snapshot: Snapshot, route_name: str, request: ChatRequest,
                     key: KeySpec | None, request_id: str) -> RouteAnswer:
    """Answer from the first model of the route that can; ``snapshot`` is the one this
    request authenticated against (see RoutingState.current)."""
    state = routing_state()
    route = route_lookup(snapshot, route_name)
    attempts: list[Attempt] = []
    min_window = 0
    for position, model in attempt_plan(route, state.board, time.time()):
        if model.context_window <= min_window:
            continue
        if not model.provider.api_key:  # not configured: skipped, nothing reached the provider
            attempts.append(Attempt(model, position, ErrorKind.AUTH.value, 0, ProviderError(
                ErrorKind.AUTH, f"{model.provider.api_key_env} is not set")))
            continue
        if attempts:
            log.info("route=%s failing over to %s", route.name, model.model_id)
        started = time.perf_counter()
        try:
            result = await _call(model, request)
        except ProviderError as error:
            _failed(route, model, position, error, started, attempts, key, request_id)
            if error.kind is ErrorKind.CONTEXT_TOO_LONG:
                min_window = model.context_window
            elif not error.retryable:
                raise CallerError(error.message, attempts=attempts) from None
            continue
        return _answered(route, model, position, result, started, attempts, key, request_id)
    raise ChainExhausted(f"Every model of route '{route.name}' failed.", attempts=attempts,
                         details=_chain_states(route, state.board))


async def _call(model: ModelSpec, request: ChatRequest) -> ChatResult:
    try:
        return await adapter_for(model.provider).chat(model, request)
    except ProviderError:
        raise
    except Exception as exc:  # noqa: BLE001 - an adapter bug must fail over, not 500
        log.exception("adapter %s raised an unnormalised error", model.provider.kind)
        raise ProviderError(ErrorKind.SERVER, f"adapter error: {type(exc).__name__}", original=exc) from exc


def _failed(route, model, position, error, started, attempts, key, request_id) -> None:
    latency_ms = int((time.perf_counter() - started) * 1000)
    attempt = Attempt(model, position, error.kind.value, latency_ms, error)
    attempts.append(attempt)
    log.warning("route=%s model=%s attempt=%d outcome=%s latency_ms=%d error=%s",
                route.name, model.model_id, len(attempts), error.kind.value, latency_ms, error.message)
    health_record(model, error)
    usage_record(route=route.name, model=model, attempt=attempt, number=len(attempts), key=key,
                 request_id=request_id)


def _answered(route, model, position, result, started, attempts, key, request_id) -> RouteAnswer:
    latency_ms = int((time.perf_counter() - started) * 1000)
    attempt = Attempt(model, position, "ok", latency_ms)
    attempts.append(attempt)
    log.info("route=%s model=%s attempt=%d outcome=ok latency_ms=%d",
             route.name, model.model_id, len(attempts), latency_ms)
    health_record(model, None)
    cost = cost_of(model, result.input_tokens, result.output_tokens)
    usage_record(route=route.name, model=model, attempt=attempt, number=len(attempts), key=key,
                 request_id=request_id, tokens_in=result.input_tokens,
                 tokens_out=result.output_tokens, cost=cost)
    return RouteAnswer(result, model, route, position, cost, attempts)


def health_record(model: ModelSpec, error: ProviderError | None) -> None:
    """Apply an attempt's outcome to the model's circuit breaker, here and (if it changed)
    for every worker."""
    board = routing_state().board
    changed = health_transition(board.get(model.pk), error=error, now=time.time(),
                                cooldown_seconds=settings.MODELHUB["COOLDOWN_SECONDS"])
    if changed is not None:
        board.set(model.pk, changed)
        ledger().submit_health(model.pk, changed)


def usage_record(*, route: str, model: ModelSpec, attempt: Attempt, number: int, key: KeySpec | None,
                 request_id: str, tokens_in: int = 0, tokens_out: int = 0, cost: Decimal = Decimal(0),
                 is_probe: bool = False, stream: bool = False, ttft_ms: int | None = None) -> None:
    """Queue the ledger row of one attempt."""
    ledger().submit_usage(UsageRecord(
        created_at=datetime.now(timezone.utc), request_id=request_id, route=route,
        provider=model.provider.name, model=model.model_id, api_key_id=key.pk if key else None,
        input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=cost,
        latency_ms=attempt.latency_ms, ttft_ms=ttft_ms, outcome=attempt.outcome, attempt=number,
        is_fallback=attempt.position > 0, is_probe=is_probe, stream=stream,
        error_message=attempt.error.message[:1000] if attempt.error else ""))


def _chain_states(route: RouteSpec, board: HealthBoard) -> list[dict]:
    now = time.time()
    states = []
    for model in route.chain:
        health = board.get(model.pk)
        states.append({
            "model": model.model_id, "provider": model.provider.name,
            "state": health.effective_state(now),
            "cooldown_until": (datetime.fromtimestamp(health.cooldown_until, timezone.utc).isoformat()
                               if health.cooldown_until > now else None),
            "last_error_kind": health.last_error_kind or None,
            "last_error": health.last_error_message or None,
        })
    return states

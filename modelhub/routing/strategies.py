"""Which chain a request walks, and in what order: the route's strategy.

    priority    the chain as the operator ordered it (no work at all on the hot path)
    complexity  the classifier's tier picks the route: simple -> ``simple_route``,
                complex -> ``complex_route`` (the PAM hybrid document's split)
    cost        the cheapest model first, by the request's estimated tokens; unknown
                prices (zero) last
    latency     the lowest recent p50 first (time to first token for streams); models
                without figures last

Failover then walks the order as ever: cooling models sit out, incapable ones are skipped.
A category's latency budget (``class_budgets_ms``) moves models whose recent p95 passes it
to the end, keeping their order."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from ..providers.base import ChatRequest, ModelSpec
from ..runtime import runtime
from .classifier import Classification, classify
from .snapshot import RouteSpec, Snapshot

PRIORITY, COMPLEXITY, COST, LATENCY = "priority", "complexity", "cost", "latency"


@dataclass(frozen=True, slots=True)
class Choice:
    """The route whose chain is walked, and why."""

    route: RouteSpec
    strategy: str = PRIORITY
    classification: Classification | None = None
    strong: ModelSpec | None = None  # complexity: the complex route's primary (the counterfactual)
    arm: str = "stable"  # "canary" when a rollout's candidate leads the chain for this request
    rollout: int | None = None  # the rollout that chose the arm


def route_choose(
    snapshot: Snapshot, route: RouteSpec, request: ChatRequest, *, stream: bool = False, sticky: str = ""
) -> Choice:
    """The chain ``request`` walks on ``route`` under the route's strategy. ``sticky``
    (the conversation, else the request id) keeps a caller on one canary arm."""
    strategy = route.strategy
    if strategy == PRIORITY and not route.class_budgets_ms:
        return Choice(route)
    classification = classify(request, route) if strategy == COMPLEXITY or route.class_budgets_ms else None
    strong = None
    target = route
    if strategy == COMPLEXITY and classification is not None:
        strong_route = snapshot.routes.get(route.complex_name or "")
        strong = strong_route.chain[0] if strong_route is not None and strong_route.chain else None
        tier_route = route.complex_name if classification.tier == "complex" else route.simple_name
        target = _usable(snapshot.routes.get(tier_route or "")) or route
    elif strategy == COST:
        target = _ordered(route, _cost_key(request))
    elif strategy == LATENCY:
        target = _ordered(route, _latency_key(stream))
    if classification is not None:
        budget = route.class_budgets_ms.get(classification.category)
        if isinstance(budget, (int, float)) and budget > 0:
            target = _ordered(target, _within_budget_key(float(budget)))
    return Choice(target, strategy, classification, strong)


def _usable(route: RouteSpec | None) -> RouteSpec | None:
    return route if route is not None and route.enabled and route.full_chain else None


def _ordered(route: RouteSpec, key) -> RouteSpec:
    """The route with its chain and its fallback chain each sorted by ``key`` (stable)."""
    chain, fallback = tuple(sorted(route.chain, key=key)), tuple(sorted(route.fallback_chain, key=key))
    return replace(route, chain=chain, fallback_chain=fallback)


def _cost_key(request: ChatRequest):
    tokens_in = max(1, (sum(len(m.content) for m in request.messages) + len(request.system or "")) // 4)
    tokens_out = request.max_tokens or 500  # an answer's typical length when none is asked

    def key(model: ModelSpec) -> tuple[int, Decimal]:
        price = model.input_price_per_mtok * tokens_in + model.output_price_per_mtok * tokens_out
        return (0, price) if price > 0 else (1, Decimal(0))  # an unknown price goes last

    return key


def _latency_key(stream: bool):
    stats = runtime().stats

    def key(model: ModelSpec) -> tuple[int, float]:
        figures = stats.latest(model_key(model))
        value = None if figures is None else (figures.ttft_p50_ms if stream else figures.p50_ms)
        return (0, value) if value is not None else (1, 0.0)

    return key


def _within_budget_key(budget_ms: float):
    stats = runtime().stats

    def key(model: ModelSpec) -> int:
        figures = stats.latest(model_key(model))
        return 1 if figures is not None and figures.p95_ms is not None and figures.p95_ms > budget_ms else 0

    return key


def model_key(model: ModelSpec) -> str:
    """How the live statistics name a model."""
    return f"{model.provider.name}/{model.model_id}"

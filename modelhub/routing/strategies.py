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
to the end, keeping their order.

A route in a rollout's canary phase (``modelhub.rollouts``) then puts a share of its callers
on the canary arm: the candidate first, then the chain without it, so a failing candidate
still fails over within the request. Who is on the arm is a stable hash of the rollout and
the caller's conversation (else its request), the same in every process: a conversation
stays on one arm, and one that is on it at 5% is still on it at 10%. A route without a
rollout pays one attribute check for all this."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from hashlib import blake2b

from ..providers.base import ChatRequest, ModelSpec
from ..runtime import runtime
from .classifier import Classification, classify
from .snapshot import RolloutSpec, RouteSpec, Snapshot, canary_route

PRIORITY, COMPLEXITY, COST, LATENCY = "priority", "complexity", "cost", "latency"
STABLE, CANARY, SHADOW = "stable", "canary", "shadow"


@dataclass(frozen=True, slots=True)
class Choice:
    """The route whose chain is walked, and why."""

    route: RouteSpec
    strategy: str = PRIORITY
    classification: Classification | None = None
    strong: ModelSpec | None = None  # complexity: the complex route's primary (the counterfactual)
    arm: str = STABLE  # "canary" when a rollout's candidate leads the chain for this request
    rollout: int | None = None  # the rollout that chose the arm


def route_choose(
    snapshot: Snapshot, route: RouteSpec, request: ChatRequest, *, stream: bool = False, sticky: str = ""
) -> Choice:
    """The chain ``request`` walks on ``route`` under the route's strategy, and the arm of
    the chosen route's canary. ``sticky`` (the conversation, else the request id) keeps a
    caller on one arm."""
    if route.strategy == PRIORITY and not route.class_budgets_ms:
        choice = Choice(route)
    else:
        choice = _strategy_choice(snapshot, route, request, stream)
    rollout = choice.route.rollout
    if rollout is None or not rollout.weight:
        return choice
    return _arm_choice(snapshot, choice, rollout, sticky)


def _strategy_choice(snapshot: Snapshot, route: RouteSpec, request: ChatRequest, stream: bool) -> Choice:
    strategy = route.strategy
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


def _arm_choice(snapshot: Snapshot, choice: Choice, rollout: RolloutSpec, sticky: str) -> Choice:
    """The choice on the caller's arm. The canary arm's route is the snapshot's, made once,
    unless the strategy ordered the chain for this request."""
    route, arm = choice.route, STABLE
    if canary_bucket(rollout.pk, sticky) < rollout.weight:
        arm = CANARY
        canary = snapshot.canaries.get(route.name) if snapshot.routes.get(route.name) is route else None
        route = canary or canary_route(route, rollout.candidate)
    return Choice(route, choice.strategy, choice.classification, choice.strong, arm, rollout.pk)


def canary_bucket(rollout: int, sticky: str) -> float:
    """Where a caller falls in [0, 100): the canary arm is the part below the weight. The
    same in every process (not Python's salted ``hash``)."""
    digest = blake2b(f"{rollout}:{sticky}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) * 100 / 2**64


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

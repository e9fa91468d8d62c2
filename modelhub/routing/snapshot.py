"""The in-memory picture of the configuration that routing reads: no database query on
the hot path. Rebuilt from the database when the config version moves; the health rows
alone are reloaded when only the health version moves."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings

from ..models import AIModel, ApiKey, ModelHealth, Provider, Rollout, Route
from ..providers.base import ModelSpec, ProviderSpec
from ..providers.urls import base_url_resolve
from .health import Health
from .overrides import FORCE, force_resolve, overrides_apply


@dataclass(frozen=True, slots=True)
class RolloutSpec:
    """A route's active rollout, as routing reads it: who is on the canary arm, which
    requests are copied to the candidate, and the rules ``modelhub.rollouts`` judges it by."""

    pk: int
    route: str
    candidate: ModelSpec
    stable: ModelSpec | None  # the route's primary besides the candidate: what it is judged against
    phase: str  # shadow | canary | paused
    step: int
    weight: float  # percent of callers on the canary arm now (0 outside the canary phase)
    last_step: bool
    shadow_percent: float
    shadow_open: bool  # in the shadow phase with budget left
    min_requests: int
    max_error_rate: float
    max_latency_ratio: float
    max_cost_ratio: float
    counts: str  # the name of this phase's and step's counters (requests, failures)


@dataclass(frozen=True, slots=True)
class RouteSpec:
    name: str
    enabled: bool
    chain: tuple[ModelSpec, ...]
    latency_budget_ms: int | None = None
    ttft_timeout_ms: int | None = None
    override: str | None = None  # the environment override in force, as the operator sees it
    fallback_name: str | None = None  # the route whose models follow this chain's
    fallback_chain: tuple[ModelSpec, ...] = ()  # its enabled models not in ``chain``
    strategy: str = "priority"  # priority | complexity | cost | latency
    simple_name: str | None = None  # complexity: the routes each tier takes
    complex_name: str | None = None
    threshold: float | None = None  # complexity: the score from which a request is complex
    strong_share_target: float = 0.05
    classifier_config: dict = field(default_factory=dict, compare=False)
    class_budgets_ms: dict = field(default_factory=dict, compare=False)
    replaced: tuple[tuple[ModelSpec, str], ...] = ()  # (a retired model, who took its place)
    rollout: RolloutSpec | None = None  # its active rollout (none while an environment override is in force)

    @property
    def full_chain(self) -> tuple[ModelSpec, ...]:
        """Every model a request may reach, in failover order: the chain, then the fallback's."""
        return self.chain + self.fallback_chain if self.fallback_chain else self.chain

    def route_at(self, position: int) -> str:
        """The route a position of ``full_chain`` belongs to."""
        return self.name if position < len(self.chain) else (self.fallback_name or self.name)


@dataclass(frozen=True, slots=True)
class KeySpec:
    pk: int
    name: str
    is_staff: bool
    routes: frozenset[str] | None = None  # None: every route
    rpm_limit: int | None = None
    daily_budget_usd: Decimal | None = None
    valid_until: float | None = None  # epoch seconds when this secret stops working; None: never

    def may_use(self, route: str) -> bool:
        return self.routes is None or route in self.routes

    def expired(self, now: float) -> bool:
        """Read against the clock on each request: an expiry needs no reload to take effect."""
        return self.valid_until is not None and now >= self.valid_until


@dataclass(frozen=True)
class Snapshot:
    version: int
    loaded_at: float
    routes: dict[str, RouteSpec] = field(default_factory=dict)
    models: dict[str, ModelSpec] = field(default_factory=dict)  # "model_id" and "provider/model_id"
    keys: dict[str, KeySpec] = field(default_factory=dict)  # sha256 hex -> key
    health: dict[int, Health] = field(default_factory=dict)
    forced: RouteSpec | None = None  # FORCE_MODEL's chain, for requests that name a model id
    canaries: dict[str, RouteSpec] = field(default_factory=dict)  # a route in a canary: its canary arm's

    def stale(self, version: int, now: float) -> bool:
        max_age = settings.MODELHUB["SNAPSHOT_MAX_AGE_SECONDS"]
        return version != self.version or now - self.loaded_at > max_age

    def provider_kinds_in_use(self) -> set[str]:
        """The provider kinds that enabled routes can call (their key is set)."""
        return {
            model.provider.kind
            for route in self.routes.values()
            if route.enabled
            for model in route.chain
            if model.provider.api_key
        }


def api_key_from_env(name: str) -> str | None:
    aliases = settings.MODELHUB["KEY_ENV_ALIASES"].get(name, ())
    for candidate in (name, *aliases):
        value = os.environ.get(candidate)
        if value:
            return value
    return None


def provider_spec(provider: Provider) -> ProviderSpec:
    return ProviderSpec(
        name=provider.name,
        kind=provider.kind,
        base_url=base_url_resolve(name=provider.name, kind=provider.kind, base_url=provider.base_url),
        api_key_env=provider.api_key_env,
        api_key=api_key_from_env(provider.api_key_env),
        timeout=provider.timeout_seconds,
    )


def model_spec(model: AIModel, provider: ProviderSpec) -> ModelSpec:
    return ModelSpec(
        pk=model.pk,
        model_id=model.model_id,
        display_name=model.display_name or model.model_id,
        provider=provider,
        context_window=model.context_window,
        max_output_tokens=model.max_output_tokens,
        input_price_per_mtok=model.input_price_per_mtok,
        output_price_per_mtok=model.output_price_per_mtok,
        supports_temperature=model.supports_temperature,
        supports_streaming=model.supports_streaming,
        max_tokens_param=model.max_tokens_param,
        env_suffix=model.env_suffix,
        supports_tools=model.supports_tools,
        supports_vision=model.supports_vision,
        supports_json_schema=model.supports_json_schema,
        params_unsupported=frozenset(model.params_unsupported or ()),
        deprecated_on=model.deprecated_on,
        retires_on=model.retires_on,
        successor_pk=model.successor_id,
    )


def _models() -> dict[int, ModelSpec]:
    providers = {p.pk: provider_spec(p) for p in Provider.objects.filter(enabled=True)}
    usable = (
        AIModel.objects.filter(enabled=True, provider__enabled=True)
        .exclude(status=AIModel.Status.RETIRED)
        .order_by("provider__name", "model_id")
    )
    return {m.pk: model_spec(m, providers[m.provider_id]) for m in usable}


def _routes(models: dict[int, ModelSpec]) -> dict[str, RouteSpec]:
    routes = {}
    related = ("fallback_route", "simple_route", "complex_route")
    for route in Route.objects.select_related(*related).prefetch_related("entries"):
        entries = sorted((e for e in route.entries.all() if e.enabled), key=lambda e: (e.position, e.pk))
        chain = tuple(models[e.model_id] for e in entries if e.model_id in models)
        routes[route.name] = RouteSpec(
            route.name,
            route.enabled,
            chain,
            route.latency_budget_ms,
            route.ttft_timeout_ms,
            fallback_name=_name(route.fallback_route),
            strategy=route.strategy,
            simple_name=_name(route.simple_route),
            complex_name=_name(route.complex_route),
            threshold=route.complexity_threshold,
            strong_share_target=route.strong_share_target,
            classifier_config=route.classifier_config or {},
            class_budgets_ms=route.class_budgets_ms or {},
        )
    return routes


def _name(route: Route | None) -> str | None:
    return route.name if route is not None else None


def retired_replace(routes: dict[str, RouteSpec], models: dict[int, ModelSpec]) -> dict[str, RouteSpec]:
    """Each chain with its retired models replaced by their successors (or dropped when
    they have none enabled); the route keeps what was replaced, for the answer's attempts.
    The snapshot is rebuilt at least every SNAPSHOT_MAX_AGE_SECONDS, so a retirement date
    takes effect within that of midnight UTC."""
    from ..lifecycle import substitute

    today = datetime.now(UTC).date()
    replaced_routes = {}
    for name, route in routes.items():
        chain, reasons = substitute(route.chain, models, today)
        if not reasons:
            replaced_routes[name] = route
            continue
        by_id = {model.model_id: model for model in route.chain}
        replaced = tuple((by_id[model_id], reason) for model_id, reason in reasons if model_id in by_id)
        replaced_routes[name] = replace(route, chain=chain, replaced=replaced)
    return replaced_routes


def fallbacks_resolve(routes: dict[str, RouteSpec]) -> dict[str, RouteSpec]:
    """Each route's fallback chain: its fallback route's models (as overridden, if enabled)
    that its own chain does not hold. One level: a fallback's fallback is not followed."""
    resolved = {}
    for name, route in routes.items():
        fallback = routes.get(route.fallback_name) if route.fallback_name and route.fallback_name != name else None
        if fallback is None or not fallback.enabled:
            resolved[name] = route
            continue
        own = {model.pk for model in route.chain}
        extra = tuple(model for model in fallback.chain if model.pk not in own)
        resolved[name] = replace(route, fallback_chain=extra)
    return resolved


def rollout_spec(row: Rollout, candidate: ModelSpec, route: RouteSpec) -> RolloutSpec:
    """The rollout ``row`` of ``route`` as routing reads it."""
    weights = row.step_weights
    shadow = row.phase == Rollout.Phase.SHADOW
    return RolloutSpec(
        pk=row.pk,
        route=route.name,
        candidate=candidate,
        stable=next((model for model in route.chain if model.pk != candidate.pk), None),
        phase=row.phase,
        step=row.step,
        weight=row.weight if row.phase == Rollout.Phase.CANARY else 0.0,
        last_step=row.step >= len(weights) - 1,
        shadow_percent=row.shadow_percent,
        shadow_open=shadow and row.shadow_spent_usd < row.shadow_budget_usd,
        min_requests=row.min_requests,
        max_error_rate=row.max_error_rate,
        max_latency_ratio=row.max_latency_ratio,
        max_cost_ratio=row.max_cost_ratio,
        counts=rollout_counts_name(row),
    )


def rollout_counts_name(row: Rollout) -> str:
    """Names the counters of the rollout's phase and step; a step that starts anew (a new
    step, or the same index after a restart) gets counters of its own."""
    since = row.step_started_at or row.created_at
    stage = "shadow" if row.phase == Rollout.Phase.SHADOW else f"canary{row.step}"
    return f"{row.pk}:{stage}:{int(since.timestamp() * 1_000_000)}"


def rollouts_attach(routes: dict[str, RouteSpec], models: dict[int, ModelSpec]) -> dict[str, RouteSpec]:
    """Each route with its active rollout. A rollout waits (no traffic) while its candidate
    is not routable (disabled, retired) or an environment override rules the route."""
    attached = dict(routes)
    for row in Rollout.objects.filter(phase__in=Rollout.ACTIVE_PHASES).select_related("route"):
        route, candidate = routes.get(row.route.name), models.get(row.candidate_id)
        if route is not None and candidate is not None and not route.override:
            attached[route.name] = replace(route, rollout=rollout_spec(row, candidate, route))
    return attached


def health_load() -> dict[int, Health]:
    """Every model's stored health: one query, for a snapshot or on a health version bump."""
    return {
        row.model_id: Health(
            state=row.state,
            cooldown_until=row.cooldown_until.timestamp() if row.cooldown_until else 0.0,
            consecutive_failures=row.consecutive_failures,
            last_error_kind=row.last_error_kind,
            last_error_message=row.last_error_message,
            changed_at=row.updated_at.timestamp(),
            cooldown_reason=row.cooldown_reason,
        )
        for row in ModelHealth.objects.all()
    }


def _key_specs(key: ApiKey) -> dict[str, KeySpec]:
    """The key under its secret's hash and, after a rotation, under the previous one's too;
    each spec knows when its own secret stops working."""
    spec = KeySpec(
        key.pk,
        key.name,
        bool(key.user and key.user.is_staff and key.user.is_active),
        frozenset(r.name for r in key.routes.all()) or None,
        key.rpm_limit,
        key.daily_budget_usd,
    )
    return {
        digest: replace(spec, valid_until=_epoch(key.valid_until(digest)))
        for digest in (key.key_hash, key.previous_key_hash)
        if digest
    }


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _keys() -> dict[str, KeySpec]:
    table: dict[str, KeySpec] = {}
    for key in ApiKey.objects.filter(is_active=True).select_related("user").prefetch_related("routes"):
        table.update(_key_specs(key))
    return table


def snapshot_build(*, version: int) -> Snapshot:
    models = _models()
    by_name: dict[str, ModelSpec] = {}
    for spec in models.values():
        by_name.setdefault(spec.model_id, spec)
        by_name[f"{spec.provider.name}/{spec.model_id}"] = spec
    routes = fallbacks_resolve(retired_replace(overrides_apply(routes=_routes(models), models=by_name), models))
    routes = rollouts_attach(routes, models)
    forced = force_resolve(models=by_name)
    return Snapshot(
        version=version,
        loaded_at=time.time(),
        routes=routes,
        models=by_name,
        keys=_keys(),
        health=health_load(),
        forced=None if forced is None else RouteSpec(FORCE, True, forced.chain, override=forced.description),
        canaries=canaries_of(routes),
    )


def canaries_of(routes: dict[str, RouteSpec]) -> dict[str, RouteSpec]:
    """Each route in a canary phase, as its canary arm walks it: made once per snapshot."""
    return {
        name: canary_route(route, route.rollout.candidate)
        for name, route in routes.items()
        if route.rollout is not None and route.rollout.weight
    }


def canary_route(route: RouteSpec, candidate: ModelSpec) -> RouteSpec:
    """The route as its canary arm walks it: the candidate first, then its chain and its
    fallback chain without it (a failing candidate still fails over within the request)."""
    chain = (candidate, *(model for model in route.chain if model.pk != candidate.pk))
    fallback = tuple(model for model in route.fallback_chain if model.pk != candidate.pk)
    return replace(route, chain=chain, fallback_chain=fallback)

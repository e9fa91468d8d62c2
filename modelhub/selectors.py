"""Reads, for the admin API, the console, the metrics endpoint and the services: plain
functions that look at the database or at this worker's routing state and change nothing.
Writes live in ``services``."""

from __future__ import annotations

import time as clock
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    Exists,
    FloatField,
    Max,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, TruncHour

from . import audit
from .models import (
    AIModel,
    Alert,
    AlertRule,
    ApiKey,
    ConfigChange,
    Conversation,
    DailyCost,
    ModelHealth,
    Route,
    RouteEntry,
    UsageRecord,
)
from .runtime import runtime
from .stats import percentile

if TYPE_CHECKING:
    from .providers.base import ModelSpec
    from .routing.health import HealthBoard
    from .routing.snapshot import RouteSpec, Snapshot

FIGURES = ("requests", "attempts", "failures", "fallbacks", "input_tokens", "output_tokens", "cost_usd")
LEDGER_GROUP_BY = ("route", "model", "provider", "api_key", "is_probe")


# --- routing as chat sees it in this worker --------------------------------------------


def routing_snapshot() -> Snapshot:
    """This worker's snapshot, reloaded first if the configuration moved."""
    return runtime().routing.current_sync()


def health_board() -> HealthBoard:
    return runtime().routing.board


def routes_live() -> dict[str, RouteSpec]:
    """The routes as chat answers from them now: enabled models only, overrides applied."""
    return routing_snapshot().routes


def route_positions(*, name: str) -> dict[int, int]:
    """Model pk -> its position in the chain chat uses for route ``name``."""
    spec = routes_live().get(name)
    return {model.pk: i for i, model in enumerate(spec.chain)} if spec else {}


def route_order_now(*, spec: RouteSpec) -> tuple[list[ModelSpec], list[ModelSpec]]:
    """The models ``spec`` answers from now, in the order chat tries them, and those it
    passes over because they are cooling down: routing's own plan (when every model is
    cooling down, the one that recovers soonest is tried)."""
    from .routing.router import attempt_plan

    plan = [model for _, model in attempt_plan(spec, health_board(), clock.time())]
    planned = {model.pk for model in plan}
    return plan, [model for model in spec.full_chain if model.pk not in planned]


# --- the registry ----------------------------------------------------------------------


def route_get_by_name(*, name: str) -> Route | None:
    return Route.objects.filter(name=name).first()


def routes_by_names(*, names) -> QuerySet[Route]:
    return Route.objects.filter(name__in=set(names))


def routes_with_chains(*, routes: QuerySet[Route]) -> QuerySet[Route]:
    """``routes`` with their entries, models and providers fetched in chain order, in one query more."""
    entries = RouteEntry.objects.select_related("model__provider").order_by("position", "id")
    return routes.prefetch_related(Prefetch("entries", queryset=entries))


def route_chain_stored(*, route: Route) -> list[dict]:
    """The chain as stored, disabled entries included: [{"model", "enabled"}], primary first."""
    return audit.chain_of(route)


def route_chain_previous(*, route: Route) -> list[dict] | None:
    """The chain the route had before its latest recorded change that differs from now."""
    current = route_chain_stored(route=route)
    for change in ConfigChange.objects.filter(route=route.name, target_type="route")[:200]:
        chain = (change.before or {}).get("chain")
        if chain is not None and chain != current:
            return chain
    return None


def route_entries_with_models(*, entries: QuerySet[RouteEntry]) -> QuerySet[RouteEntry]:
    return entries.select_related("route", "model")


def models_available() -> QuerySet[AIModel]:
    """The models routing may use: enabled, of an enabled provider, not retired."""
    return (
        AIModel.objects.filter(enabled=True, provider__enabled=True)
        .exclude(status=AIModel.Status.RETIRED)
        .select_related("provider")
    )


def models_by_name(*, name: str) -> list[AIModel]:
    """The models ``name`` may mean: those with that model_id, else provider/model_id."""
    found = list(AIModel.objects.filter(model_id=name).select_related("provider"))
    if found:
        return found
    provider, _, model_id = name.partition("/")
    return list(AIModel.objects.filter(provider__name=provider, model_id=model_id).select_related("provider"))


def model_health_rows() -> QuerySet[AIModel]:
    """Every model with its provider and health row (``model.health`` absent: never failed)."""
    return AIModel.objects.select_related("provider", "health")


def models_without_health(*, pks) -> QuerySet[AIModel]:
    """The models among ``pks`` without a health row (never failed), with their provider."""
    return (
        AIModel.objects.filter(pk__in=pks, health__isnull=True)
        .select_related("provider")
        .order_by("provider__name", "model_id")
    )


def models_of_health_rows(*, rows: QuerySet[ModelHealth]) -> QuerySet[AIModel]:
    return AIModel.objects.filter(health__in=rows)


def api_keys_active(*, keys: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
    return keys.filter(is_active=True)


def api_key_by_hash(*, digest: str) -> ApiKey | None:
    """The active key with this secret's hash as its current or its previous secret (whether
    that secret is still valid is ``key.valid_until(digest)``), with its user."""
    keys = ApiKey.objects.filter(Q(key_hash=digest) | Q(previous_key_hash=digest), is_active=True)
    return keys.select_related("user").first()


def api_key_of_user(*, user, name: str) -> ApiKey | None:
    """The user's key named ``name``, active or not."""
    return ApiKey.objects.filter(user=user, name=name).order_by("-is_active", "-pk").first()


def conversation_of(*, conversation_id: str, user, api_key_id: int | None) -> Conversation | None:
    """The conversation ``conversation_id`` that the user, or their key, owns, with its
    messages in order."""
    owners = (Q(user=user) | Q(api_key_id=api_key_id)) if api_key_id is not None else Q(user=user)
    found = Conversation.objects.filter(owners, conversation_id=conversation_id)
    return found.prefetch_related("messages").order_by("-updated_at").first()


def api_keys_by_name_or_prefix(*, name: str) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(Q(name=name) | Q(prefix=name))


def user_get_by_username(*, username: str):
    return get_user_model().objects.filter(username=username).first()


# --- the usage ledger ------------------------------------------------------------------


def today() -> date:
    return datetime.now(UTC).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _is_last_attempt():
    later = UsageRecord.objects.filter(request_id=OuterRef("request_id"), attempt__gt=OuterRef("attempt"))
    return ~Exists(later)


def _figure_sums() -> dict:
    """The FIGURES as aggregates of ledger rows annotated with ``is_last``."""
    last, ok = Q(is_last=True), Q(outcome="ok")
    return {
        "requests": Count("id", filter=last),
        "attempts": Count("id"),
        "failures": Count("id", filter=~ok),
        "fallbacks": Count("id", filter=last & ok & Q(is_fallback=True)),
        "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"),
        "cost_usd": Sum("cost_usd"),
    }


def ledger_sums(*, day: date) -> list[dict]:
    """The day's ledger summed per route, model, provider, key and probe flag. A request
    counts once, on its last attempt; a fallback is a last attempt that succeeded."""
    start, end = day_bounds(day)
    return list(
        UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(is_last=_is_last_attempt())
        .order_by()
        .values(*LEDGER_GROUP_BY)
        .annotate(**_figure_sums())
    )


def ledger_totals(*, rows: QuerySet[UsageRecord]) -> dict:
    """The FIGURES of any set of ledger rows (the admin's filtered list)."""
    return rows.order_by().annotate(is_last=_is_last_attempt()).aggregate(**_figure_sums())


def _traffic(start: datetime, end: datetime, where: Q) -> QuerySet[UsageRecord]:
    """Client traffic (probes apart) in [start, end)."""
    return UsageRecord.objects.filter(where, created_at__gte=start, created_at__lt=end, is_probe=False).order_by()


def ledger_window(*, start: datetime, end: datetime, by: tuple[str, ...], where: Q = Q(), hourly=False) -> list[dict]:
    """Client traffic in [start, end) summed per ``by`` (and per UTC hour, ``hour``, when
    ``hourly``): the FIGURES, and ``errors``, the requests that failed (their last attempt
    did). A request counts on its last attempt, as in ``ledger_sums``."""
    rows = _traffic(start, end, where).annotate(is_last=_is_last_attempt())
    if hourly:
        rows, by = rows.annotate(hour=TruncHour("created_at", tzinfo=UTC)), ("hour", *by)
    errors = Count("id", filter=Q(is_last=True) & ~Q(outcome="ok"))
    return list(rows.values(*by).annotate(**_figure_sums(), errors=errors))


class Percentile(Aggregate):
    """PostgreSQL's ``percentile_cont``: linear interpolation between the closest ranks."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, fraction: float):
        super().__init__(expression, fraction=float(fraction))


def latency_percentiles(
    *, start: datetime, end: datetime, by: tuple[str, ...] = (), where: Q = Q()
) -> dict[tuple, tuple[float | None, float | None]]:
    """p50 and p95 latency (ms) of the client attempts that succeeded in [start, end), per
    ``by`` (a tuple of its values; ``()`` for all of them). Exact over every row: computed by
    PostgreSQL, else in Python (SQLite has no percentile), both as ``stats.percentile``."""
    rows = _traffic(start, end, where).filter(outcome="ok")
    if connection.vendor == "postgresql":
        sums = {"p50": Percentile("latency_ms", 0.5), "p95": Percentile("latency_ms", 0.95)}
        found = rows.values(*by).annotate(**sums) if by else [rows.aggregate(**sums)]
        return {tuple(r[f] for f in by): (r["p50"], r["p95"]) for r in found if r["p50"] is not None}
    samples: dict[tuple, list[int]] = defaultdict(list)
    for *key, latency in rows.values_list(*by, "latency_ms"):
        samples[tuple(key)].append(latency)
    return {key: (percentile(sorted(v), 50), percentile(sorted(v), 95)) for key, v in samples.items()}


def ledger_errors(*, start: datetime, end: datetime, where: Q = Q()) -> list[dict]:
    """The failed client attempts in [start, end) per outcome (the error kind), most first,
    with the latest message of each."""
    failed = _traffic(start, end, where).exclude(outcome="ok")
    latest = failed.filter(outcome=OuterRef("outcome")).order_by("-created_at").values("error_message")[:1]
    return list(failed.values("outcome").annotate(attempts=Count("id"), message=Subquery(latest)).order_by("-attempts"))


def ledger_latest(*, where: Q = Q(), limit: int = 20) -> list[UsageRecord]:
    """The latest ledger rows (attempts) matching ``where``, newest first."""
    return list(UsageRecord.objects.filter(where).order_by("-created_at", "-id")[:limit])


def _add(into: dict, row: dict) -> None:
    for name in FIGURES:
        into[name] = into.get(name, 0) + (row[name] or 0)


def usage_metrics(*, day: date) -> dict:
    """The day's figures (live from the ledger) per route, per model, in total, and for
    probes, which count apart from client traffic."""
    totals, probes, routes, models = {}, {}, {}, {}
    for row in ledger_sums(day=day):
        if row["is_probe"]:
            _add(probes, row)
            continue
        _add(totals, row)
        _add(routes.setdefault(row["route"], {}), row)
        _add(models.setdefault(f"{row['provider']}/{row['model']}", {}), row)
    return {"day": day, "totals": totals, "routes": routes, "models": models, "probes": probes}


def usage_metrics_today() -> dict:
    return usage_metrics(day=today())


def complexity_metrics(*, day: date) -> dict[str, dict]:
    """Per complexity route, the day's requests, the share the classifier sent to the
    complex route, what they cost, what the complex route's primary would have cost for the
    same tokens (the counterfactual) and the difference saved. One query."""
    start, end = day_bounds(day)
    rows = (
        UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end, strategy="complexity", is_probe=False)
        .order_by()
        .values("route")
        .annotate(
            requests=Count("request_id", distinct=True),
            complex_requests=Count("request_id", distinct=True, filter=Q(tier="complex")),
            cost=Sum("cost_usd"),
            counterfactual=Sum("counterfactual_cost_usd"),
        )
    )
    figures = {}
    for row in rows:
        cost, counterfactual = row["cost"] or Decimal(0), row["counterfactual"] or Decimal(0)
        requests = row["requests"]
        figures[row["route"]] = {
            "requests": requests,
            "complex_requests": row["complex_requests"],
            "strong_share": row["complex_requests"] / requests if requests else None,
            "cost_usd": cost,
            "counterfactual_cost_usd": counterfactual,
            "saving_usd": counterfactual - cost,
        }
    return figures


def daily_costs(*, day: date) -> QuerySet[DailyCost]:
    """The day's rollup rows (client traffic and probes)."""
    return DailyCost.objects.filter(day=day)


def daily_totals(*, start: date, end: date) -> list[dict]:
    """Per rolled-up day in [start, end], newest first: the client traffic's requests,
    failures, fallbacks and cost, and the probes' cost."""
    probe = Q(is_probe=True)
    sums = {
        "requests": Sum("requests", filter=~probe),
        "failures": Sum("failures", filter=~probe),
        "fallbacks": Sum("fallbacks", filter=~probe),
        "cost_usd": Sum("cost_usd", filter=~probe),
        "probe_cost_usd": Sum("cost_usd", filter=probe),
    }
    rows = (
        DailyCost.objects.filter(day__gte=start, day__lte=end)
        .order_by()
        .values("day")
        .annotate(**{f"day_{name}": total for name, total in sums.items()})  # the field names are taken
        .order_by("-day")
    )
    return [{"day": row["day"], **{name: row[f"day_{name}"] for name in sums}} for row in rows]


def alerts_latest(*, limit: int = 10) -> list[Alert]:
    return list(Alert.objects.select_related("rule")[:limit])


def config_changes_latest(*, limit: int = 10, route: str | None = None) -> list[ConfigChange]:
    changes = ConfigChange.objects.all() if route is None else ConfigChange.objects.filter(route=route)
    return list(changes[:limit])


def spend_rules() -> list[AlertRule]:
    """The enabled rules on a day's cost: what today's spend is held against."""
    return list(AlertRule.objects.filter(enabled=True, metric=AlertRule.Metric.DAILY_COST))


def api_keys_with_usage(*, keys: QuerySet[ApiKey], day: date | None = None) -> QuerySet[ApiKey]:
    """``keys`` with ``last_used_at`` (the key's latest ledger row) and ``spend_today_usd`` and
    ``spend_month_usd`` (over ``day``, default today, and its month up to that day's end, in
    UTC), read from the ledger as subqueries: a list of keys stays one query, no row repeats."""
    day_start, day_end = day_bounds(day or today())
    rows = UsageRecord.objects.filter(api_key=OuterRef("pk")).order_by().values("api_key")
    return keys.annotate(
        last_used_at=Subquery(rows.annotate(last=Max("created_at")).values("last")),
        spend_today_usd=_spend_between(rows, day_start, day_end),
        spend_month_usd=_spend_between(rows, day_start.replace(day=1), day_end),
    )


def _spend_between(rows: QuerySet[UsageRecord], start: datetime, end: datetime) -> Coalesce:
    """The cost of ``rows`` in [start, end), unrounded; 0 without any (so keys sort by it)."""
    spent = rows.filter(created_at__gte=start, created_at__lt=end).annotate(total=Sum("cost_usd"))
    cost = UsageRecord._meta.get_field("cost_usd")
    return Coalesce(Subquery(spent.values("total")), Value(Decimal(0)), output_field=cost)

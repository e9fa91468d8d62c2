"""Reads, for the admin API, the console, the metrics endpoint and the services: plain
functions that look at the database or at this worker's routing state and change nothing.
Writes live in ``services``."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, Max, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from . import audit
from .models import AIModel, ApiKey, ConfigChange, ModelHealth, Route, RouteEntry, UsageRecord
from .runtime import runtime

if TYPE_CHECKING:
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


# --- the registry ----------------------------------------------------------------------


def route_get_by_name(*, name: str) -> Route | None:
    return Route.objects.filter(name=name).first()


def routes_by_names(*, names) -> QuerySet[Route]:
    return Route.objects.filter(name__in=set(names))


def routes_with_chains(*, routes: QuerySet[Route]) -> QuerySet[Route]:
    """``routes`` with their entries and models fetched in chain order, in one query more."""
    entries = RouteEntry.objects.select_related("model").order_by("position", "id")
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


def models_of_health_rows(*, rows: QuerySet[ModelHealth]) -> QuerySet[AIModel]:
    return AIModel.objects.filter(health__in=rows)


def api_keys_active(*, keys: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
    return keys.filter(is_active=True)


def api_key_by_hash(*, digest: str) -> ApiKey | None:
    """The active key with this secret's hash as its current or its previous secret (whether
    that secret is still valid is ``key.valid_until(digest)``), with its user."""
    keys = ApiKey.objects.filter(Q(key_hash=digest) | Q(previous_key_hash=digest), is_active=True)
    return keys.select_related("user").first()


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


def ledger_sums(*, day: date) -> list[dict]:
    """The day's ledger summed per route, model, provider, key and probe flag. A request
    counts once, on its last attempt; a fallback is a last attempt that succeeded."""
    start, end = day_bounds(day)
    last, ok = Q(is_last=True), Q(outcome="ok")
    return list(
        UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(is_last=_is_last_attempt())
        .order_by()
        .values(*LEDGER_GROUP_BY)
        .annotate(
            requests=Count("id", filter=last),
            attempts=Count("id"),
            failures=Count("id", filter=~ok),
            fallbacks=Count("id", filter=last & ok & Q(is_fallback=True)),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cost_usd=Sum("cost_usd"),
        )
    )


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

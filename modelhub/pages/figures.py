"""What the operator's pages show, put together from the reads in ``selectors``: each
route's chain with its models' state, prices and live statistics; the ledger over the last
24 hours per hour, route and model; today's spend against the alert rules; a day's rollup.

Rows are plain dicts for the templates: each figure as text (``cost``) and, where a chart
draws it, as a number (``cost_value``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db.models import Q

from .. import selectors
from ..models import Route
from ..routing.snapshot import RouteSpec
from ..stats import NO_REQUESTS, ModelStats, stats_key, stats_read
from .display import board_badge, hhmmss, ms, pct, usd

HOURS = 24
DAYS = 30  # the day picker's list of days


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def hours(self) -> list[datetime]:
        return [self.start + timedelta(hours=n) for n in range(HOURS)]


def window_last_day(now: datetime | None = None) -> Window:
    """The last 24 hours in whole UTC hours: from the start of the hour 23 hours ago until
    now, so that the hourly rows add up to the totals."""
    now = now or datetime.now(UTC)
    return Window(now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1), now)


# --- ledger figures --------------------------------------------------------------------


def figures(row: dict | None, latency: tuple[float | None, float | None] | None = None) -> dict:
    """One row of ledger sums, with its latency percentiles, ready to show."""
    row = row or {}
    requests, errors = row.get("requests") or 0, row.get("errors") or 0
    cost = row.get("cost_usd") or Decimal(0)
    p50, p95 = latency or (None, None)
    return {
        "requests": requests,
        "attempts": row.get("attempts") or 0,
        "failures": row.get("failures") or 0,
        "fallbacks": row.get("fallbacks") or 0,
        "errors": errors,
        "answered": requests - errors,
        "error_rate": pct(errors / requests if requests else None),
        "tokens": f"{row.get('input_tokens') or 0} / {row.get('output_tokens') or 0}",
        "p50": ms(p50),
        "p95": ms(p95),
        "p50_value": round(p50 or 0),
        "p95_value": round(p95 or 0),
        "cost": usd(cost),
        "cost_value": float(cost),
    }


SUMMED = (*selectors.FIGURES, "errors")


def _summed(rows) -> dict:
    total: dict = {}
    for row in rows:
        for name in SUMMED:
            total[name] = total.get(name, 0) + (row[name] or 0)
    return total


def _grouped(rows: list[dict], *names: str) -> dict[tuple, dict]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[n] for n in names), []).append(row)
    return {key: _summed(group) for key, group in groups.items()}


def ledger(window: Window, where: Q = Q()) -> dict:
    """The window's client traffic: totals, one row per hour (hours without traffic too),
    per route and per model. One pass over the ledger (summed per hour, route and model,
    then added up here) and three for the latency percentiles."""
    span = {"start": window.start, "end": window.end, "where": where}
    rows = selectors.ledger_window(**span, by=("route", "provider", "model"), hourly=True)
    by_hour = _grouped(rows, "hour")
    totals = figures(_summed(rows), selectors.latency_percentiles(**span).get(()))
    hours = [{"label": f"{hour:%H:00}", "hour": hour, **figures(by_hour.get((hour,)))} for hour in window.hours]
    return {
        "traffic": {"totals": totals, "hours": hours},
        "routes": _by_route(_grouped(rows, "route"), selectors.latency_percentiles(**span, by=("route",))),
        "models": _by_model(
            _grouped(rows, "provider", "model"), selectors.latency_percentiles(**span, by=("provider", "model"))
        ),
    }


def _by_route(sums: dict[tuple, dict], latency: dict) -> list[dict]:
    """Per route, most requests first."""
    rows = [{"route": route, **figures(row, latency.get((route,)))} for (route,), row in sums.items()]
    return sorted(rows, key=lambda r: (-r["requests"], r["route"]))


def _by_model(sums: dict[tuple, dict], latency: dict) -> list[dict]:
    """Per model (provider and model id), most attempts first, with its state now and its
    live statistics."""
    keys = {pair: stats_key(*pair) for pair in sums}
    live, models = stats_read(keys.values()), selectors.routing_snapshot().models
    board, now = selectors.health_board(), time.time()
    shown = []
    for (provider, model), row in sums.items():
        key = keys[(provider, model)]
        spec = models.get(key)
        shown.append(
            {
                "key": key,
                "provider": provider,
                "model": model,
                "badge": board_badge(board.get(spec.pk), now) if spec else None,
                "live": live_figures(live.get(key, NO_REQUESTS)),
                **figures(row, latency.get((provider, model))),
            }
        )
    return sorted(shown, key=lambda r: (-r["attempts"], r["key"]))


def live_figures(stats: ModelStats) -> dict:
    """A model's live statistics (the rolling window of ``stats``), ready to show."""
    return {
        "requests": stats.requests,
        "success_rate": pct(stats.success_rate),
        "p50": ms(stats.p50_ms),
        "p95": ms(stats.p95_ms),
        "ttft": ms(stats.ttft_p50_ms),
        "cost_per_request": usd(stats.cost_per_request),
    }


def errors(window: Window, where: Q = Q()) -> list[dict]:
    return selectors.ledger_errors(start=window.start, end=window.end, where=where)


# --- chains ----------------------------------------------------------------------------


def answers_now(spec: RouteSpec | None) -> str:
    """The models the route answers from now, in order, as chat tries them: cooling-down
    models passed over (named, with the time they come back), then the fallback route's."""
    if spec is None:
        return "-"
    if spec.strategy == "complexity":
        return f"simple → route {spec.simple_name or '-'}; complex → route {spec.complex_name or '-'}"
    plan, cooling = selectors.route_order_now(spec=spec)
    own = {model.pk for model in spec.chain}
    text = " → ".join(m.model_id for m in plan if m.pk in own) or "(nothing)"
    extra = [m.model_id for m in plan if m.pk not in own]
    if extra:
        text += f" ⟶ then {spec.fallback_name}: " + " → ".join(extra)
    if cooling:
        board = selectors.health_board()
        text += "; cooling down: " + ", ".join(
            f"{m.model_id} until {hhmmss(board.get(m.pk).cooldown_until)}" for m in cooling
        )
    return text


def _now_label(entry, position: dict[int, int], cooling: set[int], replaced: dict[int, str]) -> str:
    """Where the entry's model stands in the order chat tries now."""
    if not entry.enabled:
        return "entry disabled"
    if entry.model_id in replaced:
        return replaced[entry.model_id]
    if entry.model_id in position:
        return f"#{position[entry.model_id] + 1}"
    if entry.model_id in cooling:
        return "passed over: cooling down"
    return "model disabled" if not entry.model.enabled else "not used (retired or provider disabled)"


def chain_rows(route: Route, spec: RouteSpec | None, live: dict[str, ModelStats]) -> list[dict]:
    """The route's stored entries (``route.entries`` with their models and providers), each
    with its model's state, prices, live statistics and its place in the order tried now.
    A retired model says who answers in its place, and shows that model's state."""
    board, now = selectors.health_board(), time.time()
    plan, cooling = selectors.route_order_now(spec=spec) if spec is not None else ([], [])
    position = {model.pk: n for n, model in enumerate(plan)}
    replaced = {model.pk: reason for model, reason in spec.replaced} if spec is not None else {}
    rows = []
    for n, entry in enumerate(route.entries.all()):
        model = entry.model
        key = stats_key(model.provider.name, model.model_id)
        in_place = model.successor_id if model.pk in replaced and model.successor_id else model.pk
        rows.append(
            {
                "entry": entry,
                "model": model,
                "key": key,
                "badge": board_badge(board.get(in_place), now),
                "price": f"{usd(model.input_price_per_mtok)} / {usd(model.output_price_per_mtok)}",
                "live": live_figures(live.get(key, NO_REQUESTS)),
                "now": _now_label(entry, position, {m.pk for m in cooling}, replaced),
                "primary": n == 0 and entry.enabled,
            }
        )
    return rows


def chains(routes: list[Route]) -> list[dict]:
    """Each route (entries prefetched) with its chain rows and what it answers from now."""
    specs = selectors.routes_live()
    keys = [stats_key(e.model.provider.name, e.model.model_id) for r in routes for e in r.entries.all()]
    live = stats_read(keys) if keys else {}
    return [
        {
            "route": route,
            "spec": specs.get(route.name),
            "override": getattr(specs.get(route.name), "override", None),
            "answers_now": answers_now(specs.get(route.name)),
            "rows": chain_rows(route, specs.get(route.name), live),
        }
        for route in routes
    ]


def routes_with_chains(name: str | None = None) -> list[Route]:
    routes = Route.objects.select_related("fallback_route") if name is None else Route.objects.filter(name=name)
    return list(selectors.routes_with_chains(routes=routes.order_by("-enabled", "name")))


# --- money -----------------------------------------------------------------------------


def _in_scope(rule, row: dict) -> bool:
    if rule.scope == rule.Scope.ROUTE:
        return row["route"] == rule.target
    if rule.scope == rule.Scope.MODEL:
        return row["model"] == rule.target
    return True


def spend_today() -> dict:
    """Today's spend (UTC, live from the ledger; probes included: money spent) against each
    enabled daily-cost rule, scoped as the rule is."""
    day = selectors.today()
    rows = selectors.ledger_sums(day=day)
    total = sum((row["cost_usd"] or Decimal(0) for row in rows), Decimal(0))
    probes = sum((row["cost_usd"] or Decimal(0) for row in rows if row["is_probe"]), Decimal(0))
    rules = []
    for rule in selectors.spend_rules():
        spent = sum((row["cost_usd"] or Decimal(0) for row in rows if _in_scope(rule, row)), Decimal(0))
        share = float(spent / rule.threshold) if rule.threshold > 0 else 1.0
        rules.append(
            {
                "rule": rule,
                "scope": "all traffic" if rule.scope == rule.Scope.ALL else f"{rule.scope} {rule.target}",
                "spent": usd(spent),
                "threshold": usd(rule.threshold),
                "share": min(share, 1.0),
                "percent": pct(share),
                "over": spent > rule.threshold,
            }
        )
    return {"day": day, "total": usd(total), "probes": usd(probes), "rules": rules}


def _add(into: dict, row) -> None:
    for name in ("requests", "attempts", "failures", "fallbacks", "input_tokens", "output_tokens", "cost_usd"):
        into[name] = into.get(name, 0) + getattr(row, name)


def day_figures(day: date) -> dict:
    """A rolled-up day (DailyCost): client traffic per route and per model, and probes."""
    routes: dict[str, dict] = {}
    models: dict[str, dict] = {}
    totals: dict = {}
    probes: dict = {}
    for row in selectors.daily_costs(day=day):
        if row.is_probe:
            _add(probes, row)
            continue
        _add(totals, row)
        _add(routes.setdefault(row.route or "-", {}), row)
        _add(models.setdefault(stats_key(row.provider, row.model), {}), row)
    return {
        "day": day,
        "has_rows": bool(totals or probes),
        "totals": figures(totals),
        "probes": figures(probes),
        "routes": sorted(({"route": k, **figures(v)} for k, v in routes.items()), key=lambda r: -r["cost_value"]),
        "models": sorted(({"key": k, **figures(v)} for k, v in models.items()), key=lambda r: -r["cost_value"]),
    }


def days_list(until: date) -> list[dict]:
    """The last DAYS rolled-up days until ``until``, newest first, for the day picker."""
    rows = selectors.daily_totals(start=until - timedelta(days=DAYS - 1), end=until)
    return [
        {
            "day": row["day"],
            "label": f"{row['day']:%m-%d}",
            "probe_cost": usd(row["probe_cost_usd"] or Decimal(0)),
            **figures(row),
        }
        for row in rows
    ]

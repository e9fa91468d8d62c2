"""The dashboard (``/dashboard/``), its live figures (``/dashboard/live``, polled by its
script), the drill-down pages of a route and of a model, and the day picker over the daily
rollups. Staff only; server-rendered, so that with JavaScript off every figure is in a
table (the charts and the refresh are the script's)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.contrib import admin
from django.db.models import Q
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse

from .. import selectors
from ..stats import NO_REQUESTS, stats_key, stats_read, window_seconds
from . import figures
from .access import staff_json, staff_page
from .display import board_badge, change_summary, usd

LIVE_SECONDS = 10  # how often the page refreshes its figures; ?refresh=N (2 to 300) for another pace
SECTIONS = ("summary", "chains", "traffic", "routes", "spend", "models", "recent")


def page_context(request, title: str, **extra) -> dict:
    """What admin's layout needs (header, user links), a title, and the figures' common
    notes."""
    crumbs = [] if title == "Dashboard" else [{"url": reverse("dashboard"), "title": "Dashboard"}]
    return {
        **admin.site.each_context(request),
        "title": title,
        "crumbs": crumbs,
        "live_minutes": window_seconds() // 60,
        **extra,
    }


def changes_shown(changes) -> list[dict]:
    return [{"change": change, "summary": change_summary(change.before, change.after)} for change in changes]


def dashboard_figures() -> dict:
    window = figures.window_last_day()
    return {
        "window": window,
        "updated": window.end,
        **figures.ledger(window),
        "chains": figures.chains(figures.routes_with_chains()),
        "spend": figures.spend_today(),
        "alerts": selectors.alerts_latest(),
        "changes": changes_shown(selectors.config_changes_latest()),
    }


def refresh_seconds(raw: str | None) -> int:
    """?refresh=N: every N seconds (2 to 300); anything else: LIVE_SECONDS."""
    return min(max(int(raw), 2), 300) if raw and raw.isascii() and raw.isdigit() and len(raw) < 4 else LIVE_SECONDS


@staff_page
def dashboard(request):
    seconds = refresh_seconds(request.GET.get("refresh"))
    context = page_context(request, "Dashboard", live_seconds=seconds, **dashboard_figures())
    return render(request, "modelhub/dashboard/index.html", context)


@staff_json
def dashboard_live(request):
    """Each section of the dashboard rendered anew, for its script to swap in."""
    context = {"live_minutes": window_seconds() // 60, **dashboard_figures()}
    sections = {
        name: render_to_string(f"modelhub/dashboard/_{name}.html", context, request=request) for name in SECTIONS
    }
    return JsonResponse({"updated": f"{context['updated']:%H:%M:%S}", "sections": sections})


@staff_page
def route_page(request, name: str):
    routes = figures.routes_with_chains(name)
    window, where = figures.window_last_day(), Q(route=name)
    ledger = figures.ledger(window, where)
    if not routes and not ledger["traffic"]["totals"]["attempts"]:
        raise Http404(f"No route named {name!r}.")
    context = page_context(
        request,
        f"Route {name}",
        chain=figures.chains(routes)[0] if routes else None,
        window=window,
        traffic=ledger["traffic"],
        models=ledger["models"],
        errors=figures.errors(window, where),
        latest=_latest(where),
        changes=changes_shown(selectors.config_changes_latest(route=name)),
    )
    return render(request, "modelhub/dashboard/route.html", context)


@staff_page
def model_page(request, provider: str, model_id: str):
    model = next(
        (m for m in selectors.models_by_name(name=f"{provider}/{model_id}") if m.provider.name == provider), None
    )
    window, where = figures.window_last_day(), Q(provider=provider, model=model_id)
    ledger = figures.ledger(window, where)
    if model is None and not ledger["traffic"]["totals"]["attempts"]:
        raise Http404(f"No model {provider}/{model_id}.")
    key = stats_key(provider, model_id)
    context = page_context(
        request,
        f"Model {model_id}",
        model=model,
        window=window,
        traffic=ledger["traffic"],
        routes=ledger["routes"],
        errors=figures.errors(window, where),
        latest=_latest(where),
        live=figures.live_figures(stats_read([key]).get(key, NO_REQUESTS)),
        **_model_state(model),
    )
    return render(request, "modelhub/dashboard/model.html", context)


def _model_state(model) -> dict:
    """The model's badge and health as routing sees them, and the routes it serves now."""
    if model is None:
        return {}
    snapshot = selectors.routing_snapshot()
    routed = any(spec.pk == model.pk for spec in snapshot.models.values())
    health = selectors.health_board().get(model.pk)
    return {
        "price": f"{usd(model.input_price_per_mtok)} / {usd(model.output_price_per_mtok)}",
        "health": health,
        "badge": board_badge(health, datetime.now(UTC).timestamp()) if routed else None,
        "serves": [name for name, spec in snapshot.routes.items() if any(m.pk == model.pk for m in spec.full_chain)],
    }


def _latest(where: Q) -> list:
    rows = selectors.ledger_latest(where=where & Q(is_probe=False))
    for row in rows:
        row.cost = usd(row.cost_usd)
    return rows


class BadDay(ValueError):
    pass


def day_asked(raw: str | None, today: date) -> date:
    """The day in ``?day=YYYY-MM-DD`` (default today, UTC); BadDay says what is wrong."""
    if raw is None:
        return today
    try:
        day = datetime.strptime(raw, "%Y-%m-%d").date()
    except ValueError:
        raise BadDay(f"Not a day: {raw[:40]!r}. Give it as YYYY-MM-DD, e.g. {today:%Y-%m-%d}.") from None
    if day > today:
        raise BadDay(f"{day:%Y-%m-%d} is still to come: there are no figures for it yet.")
    return day


@staff_page
def day_page(request):
    """The daily rollups (DailyCost) of one day, and the last days' totals to pick from."""
    today = selectors.today()
    context = page_context(request, "Daily costs", today=today, days=figures.days_list(today), days_count=figures.DAYS)
    try:
        day = day_asked(request.GET.get("day"), today)
    except BadDay as exc:
        return render(request, "modelhub/dashboard/days.html", {**context, "error": str(exc)}, status=400)
    context.update(day=day, figures=figures.day_figures(day))
    return render(request, "modelhub/dashboard/days.html", context)

"""Celery tasks: thin wrappers that call one service each. Their schedules live in the
database (django-celery-beat, editable in admin); migrations 0005, 0008, 0013, 0015 and 0018
create the defaults."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date

from celery import shared_task

from . import alerts, calibration, conversations, costs, discovery, prices, probes, rollouts
from .runtime import runtime


@shared_task(soft_time_limit=60, time_limit=90)
def probe_models() -> dict:
    """One probe round; returns outcome counts."""
    results = probes.probes_run()
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    return counts


@shared_task(soft_time_limit=240, time_limit=300)
def rollup_costs(day: str | None = None) -> dict:
    """Roll the ledger up into DailyCost: ``day`` (YYYY-MM-DD), or every day not yet final."""
    written = costs.costs_rollup(day=date.fromisoformat(day) if day else None)
    return {d.isoformat(): n for d, n in written.items()}


@shared_task(soft_time_limit=60, time_limit=90)
def evaluate_alerts() -> list[int]:
    return [alert.pk for alert in alerts.alerts_evaluate()]


@shared_task(soft_time_limit=120, time_limit=150)
def discover_models() -> list[dict]:
    return [
        {
            "provider": r.provider,
            "added": r.added,
            "missing": r.missing,
            "back": r.back,
            "retirements": r.retirements,
            "proposals": r.proposals,
            "error": r.error,
        }
        for r in discovery.models_discover()
    ]


@shared_task(soft_time_limit=600, time_limit=660)
def prune_usage() -> int:
    """Retention: delete ledger rows older than MODELHUB_USAGE_RETENTION_DAYS once rolled up,
    and the conversation messages (and idle conversations) older than it. Returns the ledger
    rows deleted."""
    conversations.conversations_expire()
    return costs.usage_prune()


@shared_task(soft_time_limit=120, time_limit=150)
def ledger_sweep() -> int:
    """Store the spooled usage rows of processes that died on this machine (the spool is
    local: web processes sweep their own machine's). Returns the rows replayed."""
    return runtime().ledger.sweep()


@shared_task(soft_time_limit=300, time_limit=360)
def calibrate_complexity() -> list[dict]:
    """Daily: each enabled complexity route's threshold from its recent requests' scores, so
    that its strong share meets its target (``modelhub.calibration``)."""
    return [asdict(result) for result in calibration.complexity_routes_calibrate()]


@shared_task(soft_time_limit=120, time_limit=150)
def prices_check() -> dict:
    """Daily: compare the stored prices with the bundled genai-prices database; differences
    wait for an operator in admin (or are applied with MODELHUB_PRICES_AUTO_APPLY)."""
    return asdict(prices.prices_check())


@shared_task(soft_time_limit=50, time_limit=60)
def analyze_rollouts() -> list[dict]:
    """Every minute: each running rollout judged on its counts and the live statistics (as
    after each of its requests): held, advanced or rolled back (``modelhub.rollouts``)."""
    return rollouts.rollouts_analyze()


@shared_task(soft_time_limit=120, time_limit=150, ignore_result=True)
def shadow_replay(rollout: int, route: str, request: dict) -> str:
    """One shadow copy of an answered request, replayed on the rollout's candidate."""
    return rollouts.shadow_replay(rollout=rollout, route=route, request=rollouts.request_load(request))

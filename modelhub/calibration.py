"""Calibration of complexity routes: each one's threshold is set from the scores of its
recent requests so that the share sent to its complex route meets its target
(``Route.strong_share_target``, 5% by default).

The rule is RouteLLM's ``calibrate_threshold``: the threshold is the (1 - target) quantile
of the scores (linear interpolation, as ``numpy.quantile``). Scores that tie at the
quantile would send all of them one way, so the next higher score is taken instead when its
share is nearer the target. The scores are the ledger's, one per request (its first attempt;
probes and shadow copies apart), over the last ``CALIBRATION_DAYS``; with fewer than
``CALIBRATION_MIN_SAMPLES`` the threshold stays as it is, and the result says why.

The new threshold is saved on the route (a normal save: the config version moves, so every
process routes with it from its next request) and recorded in the audit trail. The Celery
task ``calibrate_complexity`` runs this daily for every enabled complexity route; admin
calls ``calibrate_route`` for one."""

from __future__ import annotations

import logging
import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings

from .audit import Actor, Source, instance_change
from .models import Route, UsageRecord
from .routing.classifier import DEFAULT_THRESHOLD

log = logging.getLogger("modelhub.calibration")

DEFAULT_DAYS = 7
DEFAULT_MIN_SAMPLES = 200
MAX_SAMPLES = 200_000  # the most recent scores read; plenty for a quantile, bounded in memory
CALIBRATION_ACTOR = Actor("calibration", Source.SYSTEM)


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    route: str
    changed: bool
    threshold: float | None  # in force after the run (None: the classifier's default)
    previous: float | None
    samples: int
    target: float  # the strong share aimed at
    strong_share: float | None  # the share of the samples at or above ``threshold``
    reason: str


def calibrate_route(
    route: Route,
    *,
    days: int | None = None,
    min_samples: int | None = None,
    actor: Actor | None = CALIBRATION_ACTOR,
    now: datetime | None = None,
) -> CalibrationResult:
    """Set ``route``'s threshold from its recent scores (see the module); unchanged, with
    the reason, when it is not a complexity route or has too few scored requests."""
    days = days if days is not None else _setting("CALIBRATION_DAYS", DEFAULT_DAYS)
    min_samples = min_samples if min_samples is not None else _setting("CALIBRATION_MIN_SAMPLES", DEFAULT_MIN_SAMPLES)
    previous, target = route.complexity_threshold, route.strong_share_target
    if route.strategy != Route.Strategy.COMPLEXITY:
        return _unchanged(route, 0, f"Route '{route.name}' is not a complexity route.")
    scores = sorted(route_scores(route.name, since=(now or datetime.now(UTC)) - timedelta(days=days)))
    if len(scores) < min_samples:
        reason = (
            f"{len(scores)} scored requests in the last {days} days; {min_samples} are needed: threshold unchanged."
        )
        return _unchanged(route, len(scores), reason, scores)
    threshold = threshold_for(scores, target)
    share = share_at_or_above(scores, threshold)
    if previous is not None and math.isclose(previous, threshold, rel_tol=0, abs_tol=1e-9):
        return _unchanged(route, len(scores), f"Already at {threshold:.6f} (strong share {share:.1%}).", scores)
    with instance_change(instance=route, actor=actor, action="calibrate"):
        route.complexity_threshold = threshold
        route.save(update_fields=["complexity_threshold"])
    log.info(
        "route %s: threshold %s -> %.6f (%d scores, strong share %.3f)",
        route.name,
        previous,
        threshold,
        len(scores),
        share,
    )
    reason = f"From {len(scores)} scored requests of the last {days} days: {share:.1%} at or above {threshold:.6f}."
    return CalibrationResult(route.name, True, threshold, previous, len(scores), target, share, reason)


def complexity_routes_calibrate(**options) -> list[CalibrationResult]:
    """``calibrate_route`` for every enabled complexity route."""
    routes = Route.objects.filter(strategy=Route.Strategy.COMPLEXITY, enabled=True).order_by("name")
    return [calibrate_route(route, **options) for route in routes]


def route_scores(name: str, *, since: datetime) -> list[float]:
    """The classifier's score of each request on route ``name`` since ``since``: one per
    request (its first attempt), neither probes nor shadow copies; the latest MAX_SAMPLES."""
    rows = (
        UsageRecord.objects.filter(route=name, attempt=1, is_probe=False, created_at__gte=since, score__isnull=False)
        .exclude(arm="shadow")
        .order_by("-created_at")
        .values_list("score", flat=True)
    )
    return list(rows[:MAX_SAMPLES])


def threshold_for(scores: Sequence[float], strong_share: float) -> float:
    """The (1 - ``strong_share``) quantile of ``scores`` (sorted), or the next higher score
    when ties at the quantile put its share further from ``strong_share``."""
    quantile = quantile_linear(scores, 1.0 - strong_share)
    above = bisect_right(scores, quantile)
    higher = scores[above] if above < len(scores) else math.nextafter(scores[-1], math.inf)
    return min((quantile, higher), key=lambda t: abs(share_at_or_above(scores, t) - strong_share))


def quantile_linear(scores: Sequence[float], q: float) -> float:
    """``numpy.quantile(scores, q)`` (method "linear") of sorted ``scores``."""
    position = (len(scores) - 1) * min(1.0, max(0.0, q))
    low = math.floor(position)
    high = min(low + 1, len(scores) - 1)
    return scores[low] + (scores[high] - scores[low]) * (position - low)


def share_at_or_above(scores: Sequence[float], threshold: float) -> float:
    """The share of sorted ``scores`` that a threshold would make complex."""
    return (len(scores) - bisect_left(scores, threshold)) / len(scores)


def _unchanged(route: Route, samples: int, reason: str, scores: Sequence[float] = ()) -> CalibrationResult:
    threshold = route.complexity_threshold
    share = share_at_or_above(scores, DEFAULT_THRESHOLD if threshold is None else threshold) if scores else None
    return CalibrationResult(route.name, False, threshold, threshold, samples, route.strong_share_target, share, reason)


def _setting(name: str, default: int) -> int:
    return int(settings.MODELHUB.get(name, default))

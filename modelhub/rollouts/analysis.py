"""The analysis of a running rollout: the verdict on its phase or step, from the step's own
counts (``work``) and the live statistics (``modelhub.stats``), and the change it makes.

    hold      fewer than ``min_requests`` requests in the step, or in the window
    rollback  error rate above ``max_error_rate`` (early, once the step's failures alone
              pass what ``min_requests`` could tolerate), p95 latency or cost per request
              above the stable model's times ``max_latency_ratio`` / ``max_cost_ratio``:
              weight 0 at once, an Alert and its notification
    advance   every check passed: the next step (shadow -> canary step 0), promotion after
              the last

It runs after each canary request and shadow copy (off the request) and every minute
(``tasks.analyze_rollouts``). A decision names the phase and step it judged, so that two
processes deciding at once change the rollout once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..audit import Actor
from ..models import Alert, AlertRule, ConfigChange, Rollout
from ..routing.snapshot import RolloutSpec
from ..routing.strategies import model_key
from ..runtime import runtime
from ..stats import NO_REQUESTS, ModelStats
from .changes import Phase, advance_locked, rollback_locked, rollout_locked
from .work import Counts, rollout_work

log = logging.getLogger("modelhub.rollouts")

ANALYSIS = Actor("rollout analysis", ConfigChange.Source.SYSTEM)
HOLD, ADVANCE, ROLLBACK = "hold", "advance", "rollback"
# Below this, latencies are not compared: a p95 of 3 ms against 1 ms is noise, not a regression.
LATENCY_FLOOR_MS = 50.0
ROLLOUT_METRIC = "rollout"  # the alert rule each rolled back rollout gets (AlertRule.Metric)


@dataclass(frozen=True, slots=True)
class Verdict:
    action: str  # hold | advance | rollback
    reason: str
    judged: tuple[str, int] = ("", 0)  # the (phase, step) judged
    check: str = ""  # rollback: error_rate | latency | cost
    value: float = 0.0  # rollback: the failing figure, and its limit
    limit: float = 0.0


def _stage(spec: RolloutSpec) -> str:
    if spec.phase == Phase.SHADOW:
        return "shadow copies"
    return f"canary requests at step {spec.step + 1} ({spec.weight:g}%)"


def counts_verdict(spec: RolloutSpec, counts: Counts) -> Verdict | None:
    """Hold or roll back on the step's own counts; None: the live statistics decide. Before
    ``min_requests`` the failures count against ``min_requests``: once they pass what that
    many requests could tolerate, no success to come can save the step."""
    judged, stage = (spec.phase, spec.step), _stage(spec)
    rate = counts.failures / max(counts.requests, spec.min_requests, 1)
    if rate > spec.max_error_rate:
        reason = (
            f"the candidate failed {counts.failures} of {counts.requests} {stage}, "
            f"above the {spec.max_error_rate:.1%} allowed (of at least {spec.min_requests})."
        )
        return Verdict(ROLLBACK, reason, judged, "error_rate", rate, spec.max_error_rate)
    if counts.requests < spec.min_requests:
        closed = "" if spec.phase != Phase.SHADOW or spec.shadow_open else "; its shadow budget is spent"
        return Verdict(HOLD, f"{counts.requests} of the {spec.min_requests} {stage} needed{closed}.", judged)
    return None


def figures_verdict(spec: RolloutSpec, candidate: ModelStats | None, stable: ModelStats | None) -> Verdict:
    """Roll back on latency or cost against the stable model over the window, hold while the
    window has too few of the candidate's requests, advance otherwise."""
    judged = (spec.phase, spec.step)
    seen = 0 if candidate is None else candidate.requests
    if candidate is None or seen < spec.min_requests or candidate.p95_ms is None:
        return Verdict(HOLD, f"the live statistics hold {seen} of the {spec.min_requests} requests needed.", judged)
    if stable is None or stable.p95_ms is None:
        return Verdict(ADVANCE, "passed on errors; no figures of the stable model to compare with.", judged)
    latency = max(candidate.p95_ms, LATENCY_FLOOR_MS) / max(stable.p95_ms, LATENCY_FLOOR_MS)
    if latency > spec.max_latency_ratio:
        reason = (
            f"p95 latency {candidate.p95_ms:.0f} ms against the stable model's {stable.p95_ms:.0f} ms "
            f"({latency:.2f}x, above {spec.max_latency_ratio:g}x)."
        )
        return Verdict(ROLLBACK, reason, judged, "latency", latency, spec.max_latency_ratio)
    cost = _ratio(candidate.cost_per_request, stable.cost_per_request)
    if cost is not None and cost > spec.max_cost_ratio:
        reason = (
            f"cost per request ${candidate.cost_per_request:.6f} against the stable model's "
            f"${stable.cost_per_request:.6f} ({cost:.2f}x, above {spec.max_cost_ratio:g}x)."
        )
        return Verdict(ROLLBACK, reason, judged, "cost", cost, spec.max_cost_ratio)
    costs = "" if cost is None else f", cost {cost:.2f}x"
    return Verdict(ADVANCE, f"passed: p95 latency {latency:.2f}x{costs} the stable model's.", judged)


def _ratio(value: Decimal | None, base: Decimal | None) -> float | None:
    """value / base; None where the stable model's figure is unknown or free (no price)."""
    return None if value is None or not base else float(value / base)


def rollout_verdict(spec: RolloutSpec, counts: Counts) -> Verdict:
    """The verdict on the step now: its counts first, then (only then) the live statistics."""
    return counts_verdict(spec, counts) or figures_verdict(spec, *_figures(spec))


def _figures(spec: RolloutSpec) -> tuple[ModelStats, ModelStats | None]:
    """The candidate's and the stable model's figures over the window, read from the store."""
    candidate, stable = model_key(spec.candidate), model_key(spec.stable) if spec.stable is not None else None
    found = runtime().stats.read([candidate] if stable is None else [candidate, stable])
    return found.get(candidate, NO_REQUESTS), None if stable is None else found.get(stable, NO_REQUESTS)


@dataclass(frozen=True, slots=True)
class Status:
    """What the analysis would decide now, and what that rests on (admin, the admin API)."""

    verdict: Verdict
    counts: Counts
    candidate: ModelStats
    stable: ModelStats | None


def rollout_status(spec: RolloutSpec) -> Status:
    counts = rollout_work().counts.read(spec.counts)
    candidate, stable = _figures(spec)
    return Status(counts_verdict(spec, counts) or figures_verdict(spec, candidate, stable), counts, candidate, stable)


def rollout_spec_live(rollout: Rollout) -> RolloutSpec | None:
    """The rollout as this worker routes it; None unless it runs here (shadow or canary)."""
    route = runtime().routing.current_sync().routes.get(rollout.route.name)
    spec = route.rollout if route is not None else None
    return spec if spec is not None and spec.pk == rollout.pk and spec.phase != Phase.PAUSED else None


def rollout_analyze(spec: RolloutSpec, counts: Counts | None = None) -> Verdict:
    """Judge the rollout's phase or step and act on the verdict."""
    verdict = rollout_verdict(spec, rollout_work().counts.read(spec.counts) if counts is None else counts)
    if verdict.action != HOLD:
        rollout_decide(spec, verdict)
    return verdict


def rollouts_analyze() -> list[dict]:
    """Every running rollout judged (the schedule); a held one notes why on its row."""
    results = []
    for route in runtime().routing.current_sync().routes.values():
        spec = route.rollout
        if spec is None or spec.phase not in (Phase.SHADOW, Phase.CANARY):
            continue
        verdict = rollout_analyze(spec)
        if verdict.action == HOLD:
            held = Rollout.objects.filter(pk=spec.pk, phase=spec.phase, step=spec.step)
            held.update(reason=f"Held: {verdict.reason}")
        results.append({"rollout": spec.pk, "route": spec.route, "action": verdict.action, "reason": verdict.reason})
    return results


def rollout_decide(spec: RolloutSpec, verdict: Verdict) -> None:
    """Act on the analysis' verdict, unless the phase and step it judged have moved on
    (another process decided first). A rollback raises an Alert and notifies."""
    with transaction.atomic():
        rollout = rollout_locked(spec.pk)
        if (rollout.phase, rollout.step) != verdict.judged:
            return
        if verdict.action == ADVANCE:
            advance_locked(rollout, ANALYSIS, f"Step passed: {verdict.reason}")
            return
        rollback_locked(rollout, ANALYSIS, f"Rolled back: {verdict.reason}")
    _alert_raise(rollout, verdict)


def _alert_raise(rollout: Rollout, verdict: Verdict) -> None:
    """The rollback's alert and its notification, after the rollback is stored: it stands
    whatever becomes of them."""
    from ..alerts import alert_notify

    try:
        with transaction.atomic():
            alert = _alert_create(rollout, verdict)
    except IntegrityError:  # the rule's alert of the day exists: a rollout id used again
        log.warning("rollout #%s rolled back; its alert exists already: %s", rollout.pk, verdict.reason)
        return
    alert_notify(alert=alert)


def _alert_create(rollout: Rollout, verdict: Verdict) -> Alert:
    """The rolled back rollout's alert, under a rule of its own (its emails and webhook
    editable in admin like any rule's; the rule's threshold is the check that failed)."""
    name = f"Rollout #{rollout.pk}: {rollout.candidate.model_id} on {rollout.route.name}"
    rule, _ = AlertRule.objects.get_or_create(
        name=name[: AlertRule._meta.get_field("name").max_length],
        defaults=dict(
            metric=ROLLOUT_METRIC,
            threshold=_decimal(verdict.limit),
            scope=AlertRule.Scope.ROUTE,
            target=rollout.route.name,
            min_requests=rollout.min_requests,
        ),
    )
    return Alert.objects.create(
        rule=rule,
        period=timezone.now().date(),
        value=_decimal(verdict.value),
        threshold=_decimal(verdict.limit),
        message=f"{rule.name} rolled back: {verdict.reason}",
    )


def _decimal(value: float) -> Decimal:
    return Decimal(str(round(value, 6)))

"""Rollouts (the SarvanOM upgrade path): a candidate model brought onto a route safely.

    shadow    a share of the route's answered requests (``shadow_percent``) is copied to the
              candidate by a Celery task after the answer is sent: never streamed, its
              answer discarded, never counted against the caller's key, costed in the ledger
              as arm "shadow", stopped once ``shadow_spent_usd`` reaches ``shadow_budget_usd``
    canary    ``step_weights[step]`` percent of the route's callers get the candidate first,
              then the stable chain (``routing.strategies``): a failing candidate still fails
              over, so callers see no error
    promoted  the last step passed: the candidate is the route's primary (``set_primary``)
    rolled_back / paused

The analysis (``analysis``) judges the phase or step on its own counts (its requests, and
those the candidate failed, or sat out because its breaker had it out) and on the live
statistics (p95 latency and cost per request, the candidate's against the stable model's
over the same window): hold, roll back (with an Alert), or advance. It runs after each
canary request and shadow copy, off the request (``traffic``, ``work``), and every minute.

Every change (``changes``) is a ConfigChange on the route and bumps the config version:
every process obeys it on its next request; the routing snapshot carries each route's
active rollout (``routing.snapshot.RolloutSpec``) and routing reads it there."""

from .analysis import (
    ADVANCE,
    ANALYSIS,
    HOLD,
    LATENCY_FLOOR_MS,
    ROLLBACK,
    ROLLOUT_METRIC,
    Status,
    Verdict,
    counts_verdict,
    figures_verdict,
    rollout_analyze,
    rollout_spec_live,
    rollout_status,
    rollouts_analyze,
)
from .changes import (
    EDITABLE,
    RolloutConflict,
    rollout_advance,
    rollout_pause,
    rollout_promote,
    rollout_resume,
    rollout_rollback,
    rollout_start,
    rollout_start_check,
    rollout_update,
)
from .traffic import candidate_failed, request_dump, request_load, rollout_request_done, shadow_replay
from .work import Counts, rollout_work

__all__ = [
    "ADVANCE",
    "ANALYSIS",
    "EDITABLE",
    "HOLD",
    "LATENCY_FLOOR_MS",
    "ROLLBACK",
    "ROLLOUT_METRIC",
    "Counts",
    "RolloutConflict",
    "Status",
    "Verdict",
    "candidate_failed",
    "counts_verdict",
    "figures_verdict",
    "request_dump",
    "request_load",
    "rollout_advance",
    "rollout_analyze",
    "rollout_pause",
    "rollout_promote",
    "rollout_request_done",
    "rollout_resume",
    "rollout_rollback",
    "rollout_spec_live",
    "rollout_start",
    "rollout_start_check",
    "rollout_status",
    "rollout_update",
    "rollout_work",
    "rollouts_analyze",
    "shadow_replay",
]

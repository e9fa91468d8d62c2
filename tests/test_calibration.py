"""Calibration of a complexity route's threshold: on a generated score distribution the
strong share lands within 2 points of its target; only the route's own first attempts of
the window count; ties at the quantile do not send everything one way; too few samples
or another strategy leave the threshold alone; the change is saved (every process sees it
on its next request) and audited; the daily task calibrates every complexity route."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync

from modelhub import tasks
from modelhub.calibration import (
    calibrate_route,
    quantile_linear,
    share_at_or_above,
    threshold_for,
)
from modelhub.models import ConfigChange, Route, UsageRecord
from modelhub.runtime import runtime

# Now, to the hour: the daily task reads the ledger back from the real clock.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture(autouse=True)
def _version_file_apart(settings, tmp_path):
    settings.MODELHUB = {**settings.MODELHUB, "VERSION_FILE": str(tmp_path / "versions")}


@pytest.fixture
def hybrid(db):
    """Route "hybrid" (complexity), in place of the seeded one."""
    Route.objects.filter(strategy="complexity").delete()
    cheap, strong = Route.objects.create(name="cheap"), Route.objects.create(name="strong")
    return Route.objects.create(name="hybrid", strategy="complexity", simple_route=cheap, complex_route=strong)


def generated_scores(n: int, seed: int = 10) -> list[float]:
    """Scores shaped as the heuristic gives them: a third at exactly 0 (greetings and
    lookups), most of the rest low, a tail of complex ones, some at exactly 1."""
    rng = random.Random(seed)
    scores = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.33:
            scores.append(0.0)
        elif kind < 0.88:
            scores.append(rng.betavariate(2, 6))
        elif kind < 0.97:
            scores.append(rng.uniform(0.4, 0.95))
        else:
            scores.append(1.0)
    return scores


def ledger_rows(scores, *, route="hybrid", age=timedelta(hours=1), **fields) -> None:
    rows = [
        UsageRecord(
            created_at=NOW - age,
            request_id=uuid.uuid4().hex,
            route=route,
            provider="sim-openai",
            model="cheap",
            outcome="ok",
            score=score,
            **fields,
        )
        for score in scores
    ]
    UsageRecord.objects.bulk_create(rows)


@pytest.mark.parametrize("target", [0.05, 0.10, 0.25, 0.5])
def test_the_strong_share_meets_its_target_within_2_points(hybrid, target):
    scores = generated_scores(3000)
    ledger_rows(scores)
    hybrid.strong_share_target = target
    hybrid.save()

    result = calibrate_route(hybrid, now=NOW)

    hybrid.refresh_from_db()
    share = sum(score >= hybrid.complexity_threshold for score in scores) / len(scores)
    assert result.changed and result.threshold == hybrid.complexity_threshold
    assert abs(share - target) <= 0.02, (share, target, result)
    assert result.strong_share == pytest.approx(share) and result.samples == 3000


def test_only_the_routes_first_attempts_of_the_window_count(hybrid):
    scores = generated_scores(1000)
    ledger_rows(scores)
    high = [1.0] * 1000  # each would move the threshold if it counted
    ledger_rows(high, attempt=2)  # a failover attempt of a request already counted
    ledger_rows(high, is_probe=True)
    ledger_rows(high, arm="shadow")
    ledger_rows(high, route="other")
    ledger_rows(high, age=timedelta(days=8))  # before the 7-day window
    ledger_rows([None] * 1000)  # no score (recorded before the route was a complexity route)

    result = calibrate_route(hybrid, now=NOW)

    assert result.samples == 1000
    assert result.threshold == threshold_for(sorted(scores), 0.05)


def test_ties_at_the_quantile_take_the_nearer_side():
    scores = sorted([0.0] * 970 + [0.8] * 30)  # the 95% quantile is 0.0: everything would be complex

    threshold = threshold_for(scores, 0.05)

    assert threshold == 0.8 and share_at_or_above(scores, threshold) == 0.03


def test_a_target_of_0_or_1_sends_nothing_or_everything_to_the_complex_route():
    scores = sorted(generated_scores(500))

    assert share_at_or_above(scores, threshold_for(scores, 0.0)) == 0.0
    assert share_at_or_above(scores, threshold_for(scores, 1.0)) == 1.0


@pytest.mark.parametrize(
    "scores, q, expected",
    [([0, 1, 2, 3, 4], 0.25, 1.0), ([0, 10], 0.95, 9.5), ([1, 2, 3, 4], 0.5, 2.5), ([7], 0.3, 7.0)],
)
def test_the_quantile_is_numpys_linear_one(scores, q, expected):
    assert quantile_linear(scores, q) == pytest.approx(expected)


def test_too_few_samples_leave_the_threshold_and_say_why(hybrid):
    ledger_rows(generated_scores(199))

    result = calibrate_route(hybrid, now=NOW)

    hybrid.refresh_from_db()
    assert (result.changed, result.threshold, hybrid.complexity_threshold) == (False, None, None)
    assert "199 scored requests in the last 7 days; 200 are needed" in result.reason
    assert not ConfigChange.objects.filter(action="calibrate").exists()


def test_the_window_and_minimum_come_from_the_settings(hybrid, settings):
    settings.MODELHUB = {**settings.MODELHUB, "CALIBRATION_DAYS": 30, "CALIBRATION_MIN_SAMPLES": 50}
    ledger_rows(generated_scores(60), age=timedelta(days=20))

    assert calibrate_route(hybrid, now=NOW).changed


def test_a_route_of_another_strategy_is_left_alone(hybrid):
    plain = Route.objects.create(name="plain")
    ledger_rows(generated_scores(500), route="plain")

    result = calibrate_route(plain, now=NOW)

    assert not result.changed and "not a complexity route" in result.reason


def test_the_new_threshold_reaches_every_process_and_the_audit_trail(hybrid):
    ledger_rows(generated_scores(1000))
    before = async_to_sync(runtime().routing.current)()
    assert before.routes["hybrid"].threshold is None

    result = calibrate_route(hybrid, now=NOW)

    after = async_to_sync(runtime().routing.current)()
    assert after.version != before.version and after.routes["hybrid"].threshold == result.threshold
    change = ConfigChange.objects.get(action="calibrate")
    assert (change.actor, change.source, change.target) == ("calibration", "system", "hybrid")
    assert (change.before, change.after) == ({"complexity_threshold": None}, {"complexity_threshold": result.threshold})


def test_a_second_run_on_the_same_scores_changes_nothing(hybrid):
    ledger_rows(generated_scores(1000))
    first = calibrate_route(hybrid, now=NOW)

    second = calibrate_route(hybrid, now=NOW)

    assert first.changed and not second.changed and second.threshold == first.threshold
    assert second.reason.startswith("Already at") and ConfigChange.objects.filter(action="calibrate").count() == 1


def test_the_daily_task_calibrates_every_enabled_complexity_route(hybrid):
    other = Route.objects.create(name="hybrid-2", strategy="complexity", strong_share_target=0.2)
    Route.objects.create(name="off", strategy="complexity", enabled=False)
    ledger_rows(generated_scores(1000))  # hybrid-2 has none: too few samples

    results = tasks.calibrate_complexity.apply().get()  # as a worker runs it

    assert [(r["route"], r["changed"]) for r in results] == [("hybrid", True), ("hybrid-2", False)]
    hybrid.refresh_from_db(), other.refresh_from_db()
    assert hybrid.complexity_threshold == results[0]["threshold"] and other.complexity_threshold is None

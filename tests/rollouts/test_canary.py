"""The canary phase through the native endpoint: who is on the arm, what the canary arm
walks, and the automatic rollback (injected errors, latency, token usage) with every caller
answered, an Alert and the audit trail."""

from decimal import Decimal

import pytest

from modelhub.models import Alert, ConfigChange, UsageRecord
from modelhub.routing.strategies import canary_bucket
from tests.rollouts.conftest import ask, fresh, on_arm, start


def test_a_conversation_stays_on_its_arm_and_callers_split_by_the_weight(hub, models):
    rollout = start(models, step_weights=[50, 100], min_requests=1000)
    arms = {}
    for n in range(40):
        conversation = f"c{n % 10}"
        body = ask(hub, conversation_id=conversation)
        arms.setdefault(conversation, set()).add(body["routing"]["arm"])
        assert body["routing"]["rollout"] == rollout.pk
        assert body["model"] == ("cand-m" if body["routing"]["arm"] == "canary" else "stable-m")
    assert all(len(seen) == 1 for seen in arms.values())
    assert {next(iter(seen)) for seen in arms.values()} == {"canary", "stable"}


def test_the_canary_arm_walks_the_candidate_then_the_stable_chain(hub, models):
    rollout = start(models, step_weights=[100], min_requests=1000)
    (conversation,) = on_arm(rollout, canary=True)

    body = ask(hub, conversation_id=conversation)

    assert body["model"] == "cand-m" and body["source"] == "primary"
    assert body["routing"]["order"] == ["cand-m", "stable-m", "spare-m"]
    row = UsageRecord.objects.get()
    assert (row.model, row.arm, row.route) == ("cand-m", "canary", "pam")


def test_a_caller_in_a_weight_stays_in_a_larger_one():
    inside = [s for s in (f"x{n}" for n in range(2000)) if canary_bucket(7, s) < 5]
    assert inside and all(canary_bucket(7, s) < 10 for s in inside)
    assert 60 <= len(inside) <= 140  # about 5% of 2000


def rolled_back(hub, rollout, calls: int = 30, canary: bool = True) -> list[dict]:
    """Requests on the canary arm until the rollout ends; every one must be answered."""
    answers = []
    for conversation in on_arm(rollout, canary=canary, count=calls):
        answers.append(ask(hub, conversation_id=conversation))
        if fresh(rollout).phase != "canary":
            return answers
    pytest.fail(f"still {fresh(rollout).phase} after {calls} requests: {fresh(rollout).reason}")


def assert_rolled_back_with_alert(rollout, check: str) -> Alert:
    rollout = fresh(rollout)
    assert (rollout.phase, rollout.weight) == ("rolled_back", 0)
    assert rollout.ended_at is not None and rollout.reason.startswith("Rolled back:")
    alert = Alert.objects.get(rule__target="pam")
    assert alert.rule.metric == "rollout" and alert.value > alert.threshold
    assert f"#{rollout.pk}" in alert.message and rollout.reason.removeprefix("Rolled back: ") in alert.message
    change = ConfigChange.objects.get(action="rollout_rollback")
    assert (change.actor, change.source, change.route) == ("rollout analysis", "system", "pam")
    assert change.after["phase"] == "rolled_back"
    return alert


def test_injected_errors_roll_the_canary_back_and_every_caller_is_answered(hub, sim, models):
    rollout = start(models, step_weights=[100], min_requests=20)
    sim.set_fault("cand-m", status=500)

    answers = rolled_back(hub, rollout)

    assert [a["model"] for a in answers] == ["stable-m"] * len(answers)
    alert = assert_rolled_back_with_alert(rollout, "error_rate")
    assert alert.threshold == Decimal("0.05")
    assert "failed" in alert.message
    assert ask(hub, conversation_id=on_arm(rollout, canary=True)[0])["routing"]["arm"] == "stable"


def test_injected_latency_rolls_the_canary_back(hub, sim, models):
    rollout = start(models, step_weights=[50, 100], min_requests=4)
    for conversation in on_arm(rollout, canary=False, count=4):  # the stable model's figures
        ask(hub, conversation_id=conversation)
    sim.set_fault("cand-m", latency_ms=300)

    answers = rolled_back(hub, rollout)

    assert {a["model"] for a in answers} == {"cand-m"}
    alert = assert_rolled_back_with_alert(rollout, "latency")
    assert "p95 latency" in alert.message and alert.threshold == Decimal("1.5")


def test_higher_token_usage_rolls_the_canary_back_on_cost(hub, sim, models):
    rollout = start(models, step_weights=[50, 100], min_requests=4, max_latency_ratio=100)
    for conversation in on_arm(rollout, canary=False, count=4):
        ask(hub, conversation_id=conversation)
    sim.set_pace("cand-m", chunks=200)  # 200 output tokens where stable-m answers in 4

    answers = rolled_back(hub, rollout)

    assert {a["usage"]["output_tokens"] for a in answers} == {200}
    alert = assert_rolled_back_with_alert(rollout, "cost")
    assert "cost per request" in alert.message


def test_a_complexity_route_takes_the_canary_of_the_route_it_delegates_to(hub, models):
    from modelhub.models import Route

    pam = Route.objects.get(name="pam")
    Route.objects.filter(name="hybrid").delete()  # the seeded one
    Route.objects.create(name="hybrid", strategy="complexity", simple_route=pam, complex_route=pam)
    rollout = start(models, step_weights=[100], min_requests=1000)

    body = ask(hub, route="hybrid")

    assert (body["model"], body["routing"]["arm"], body["routing"]["rollout"]) == ("cand-m", "canary", rollout.pk)
    row = UsageRecord.objects.get()
    assert (row.route, row.arm, row.strategy) == ("hybrid", "canary", "complexity")

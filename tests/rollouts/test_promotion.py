"""A rollout walks every phase and step by itself, from shadow copies to promotion: each
step judged on its own requests, the candidate made the route's primary through the audited
set-primary, every decision a ConfigChange."""

from modelhub import rollouts, tasks
from modelhub.models import AIModel, ConfigChange, Route, UsageRecord
from modelhub.runtime import runtime
from tests.rollouts.conftest import OPERATOR, ask, fresh, on_arm, start

WEIGHTS = [1, 5, 10, 25, 50, 100]  # the default steps


def test_a_rollout_walks_every_step_to_promotion(hub, sim, models):
    stable, spare, candidate = models
    AIModel.objects.filter(pk=candidate.pk).update(status="candidate", enabled=False)  # as discovery adds them
    candidate.refresh_from_db()
    rollout = start(models, phase="shadow", shadow_percent=100, min_requests=3, max_latency_ratio=20)
    assert rollout.step_weights == WEIGHTS
    candidate.refresh_from_db()
    assert candidate.enabled  # a rollout's candidate is callable

    seen = []
    for _ in range(60):
        current = fresh(rollout)
        if current.phase == "promoted":
            break
        seen.append((current.phase, current.step))
        sticky = on_arm(current, canary=True)[0] if current.phase == "canary" else None
        body = ask(hub, conversation_id=sticky) if sticky else ask(hub)
        runtime().ledger.flush()  # shadow copies' rows feed the live statistics
        if current.phase == "canary":
            assert (body["model"], body["routing"]["arm"]) == ("cand-m", "canary")

    rollout = fresh(rollout)
    assert rollout.phase == "promoted", (seen[-1], rollout.reason)
    assert [step for phase, step in dict.fromkeys(seen) if phase == "canary"] == list(range(len(WEIGHTS)))
    route = Route.objects.get(name="pam")
    assert [e.model.model_id for e in route.entries.order_by("position")] == ["cand-m", "stable-m", "spare-m"]
    candidate.refresh_from_db()
    assert candidate.status == "active"
    actions = list(ConfigChange.objects.filter(route="pam").order_by("id").values_list("action", flat=True))
    assert actions == [
        "rollout_start",
        "rollout_canary",
        *["rollout_step"] * (len(WEIGHTS) - 1),
        "set_primary",
        "rollout_promote",
    ]
    set_primary = ConfigChange.objects.get(action="set_primary")
    assert (set_primary.actor, set_primary.source, set_primary.target) == ("rollout analysis", "system", "cand-m")
    assert set_primary.before["chain"][0]["model"] == "sim-openai/stable-m"
    assert set_primary.after["chain"][0]["model"] == "sim-anthropic/cand-m"
    assert UsageRecord.objects.filter(arm="shadow", model="cand-m").count() >= 3
    assert UsageRecord.objects.filter(arm="canary", model="cand-m").count() >= 3 * len(WEIGHTS)

    body = ask(hub)  # the next request: the candidate is the primary, no rollout any more
    assert (body["model"], body["source"], body["routing"]["arm"]) == ("cand-m", "primary", "stable")
    assert "rollout" not in body["routing"]


def test_the_schedule_judges_what_the_requests_could_not(hub, models):
    """The last canary request's analysis held (its ledger row had not yet reached the live
    statistics); with no more traffic, the minute's analysis takes the step."""
    rollout = start(models, step_weights=[50, 100], min_requests=3, max_latency_ratio=20)
    for sticky in on_arm(rollout, canary=True, count=3):
        response = hub.client.post(
            "/api/v1/pam/chat",
            {"message": "Hi", "conversation_id": sticky},
            content_type="application/json",
            headers={"Authorization": f"Bearer {hub.key}"},
        )
        assert response.status_code == 200
    rollouts.rollout_work().run_pending()  # counted: 3 of 3, but the statistics hold none yet
    assert fresh(rollout).step == 0

    held = tasks.analyze_rollouts()
    assert held == [{"rollout": rollout.pk, "route": "pam", "action": "hold", "reason": held[0]["reason"]}]
    assert fresh(rollout).reason == f"Held: {held[0]['reason']}"

    runtime().ledger.flush()  # the rows reach the statistics
    (advanced,) = tasks.analyze_rollouts()

    assert advanced["action"] == "advance"
    assert (fresh(rollout).step, fresh(rollout).weight) == (1, 100)


def test_a_decision_on_a_step_that_has_moved_on_changes_nothing(hub, models):
    rollout = start(models, step_weights=[50, 100])
    spec = runtime().routing.current_sync().routes["pam"].rollout
    rollouts.rollout_advance(rollout=rollout, by=OPERATOR)  # another process decided first

    rollouts.analysis.rollout_decide(spec, rollouts.Verdict("advance", "passed", judged=("canary", 0)))

    assert (fresh(rollout).phase, fresh(rollout).step) == ("canary", 1)
    assert ConfigChange.objects.filter(action="rollout_step").count() == 1

"""The shadow phase: a copy of an answered request replayed on the candidate after the
answer, never streamed, costed in the ledger as arm "shadow" under no key, stopped at its
budget; the caller's answer and budget are what they would be without it."""

import asyncio
import time
import urllib.request
from decimal import Decimal

import orjson
import pytest

from modelhub import rollouts
from modelhub.models import Rollout, UsageRecord
from modelhub.runtime import runtime
from modelhub.services import api_key_create
from tests.hubserver import hub_server, live  # noqa: F401 - fixtures
from tests.rollouts.conftest import ask, chain_of, fresh, start


def spent_today(key_pk: int) -> int:
    """The key's spend today in the limits' counters (pico-dollars)."""
    return asyncio.run(runtime().counters.admit(key_pk, time.time(), rpm=None))[1]


def test_a_copy_is_replayed_on_the_candidate_after_the_answer(hub, sim, models):
    rollout = start(models, phase="shadow", shadow_percent=100, min_requests=1000)

    response = hub.chat({"message": "Hi", "max_tokens": 50})
    assert sim.calls_for("cand-m") == []  # the answer is out; the copy waits for the rollout work
    rollouts.rollout_work().run_pending()
    runtime().ledger.flush()

    body = response.json()
    assert (body["model"], body["routing"]["arm"]) == ("stable-m", "stable")
    (call,) = sim.calls_for("cand-m")
    assert call.body["messages"][-1]["content"] == "Hi" and call.body["max_tokens"] == 50
    shadow = UsageRecord.objects.get(model="cand-m")
    assert (shadow.arm, shadow.route, shadow.api_key_id, shadow.outcome) == ("shadow", "pam", None, "ok")
    rollout = fresh(rollout)
    assert rollout.shadow_requests == 1 and rollout.shadow_spent_usd == shadow.cost_usd > 0


def test_the_caller_answer_and_budget_do_not_change(hub, sim, models):
    key, secret = api_key_create(name="budgeted", daily_budget_usd=Decimal("1"))
    plain = hub.chat({"message": "Hi"}, key=secret).json()
    start(models, phase="shadow", shadow_percent=100, min_requests=1000)

    shadowed = ask(hub, key=secret)
    runtime().ledger.flush()

    assert (shadowed["content"], shadowed["model"], shadowed["cost_usd"]) == (
        plain["content"],
        plain["model"],
        plain["cost_usd"],
    )
    own = UsageRecord.objects.filter(api_key=key)
    assert own.count() == 2 and not own.filter(arm="shadow").exists()
    assert UsageRecord.objects.filter(arm="shadow", api_key=None).count() == 1
    assert spent_today(key.pk) == sum(row.cost_usd for row in own) * 10**12


def test_a_streamed_request_is_copied_as_a_plain_one(live, sim):
    start(chain_of(live), phase="shadow", shadow_percent=100, min_requests=1000)
    request = urllib.request.Request(
        f"{live.server.url}/api/v1/pam/chat",
        data=orjson.dumps({"message": "Hi", "stream": True}),
        headers={"Authorization": f"Bearer {live.key}", "Content-Type": "application/json"},
    )

    with urllib.request.urlopen(request, timeout=10) as response:
        events = response.read().decode()
    rollouts.rollout_work().run_pending()

    assert "event: done" in events and '"model":"stable-m"' in events
    assert sim.calls_for("stable-m")[0].stream
    (call,) = sim.calls_for("cand-m")
    assert not call.stream


def test_copies_stop_once_their_budget_is_spent(hub, sim, models):
    one_copy = Decimal("0.00006")  # about what cand-m costs for "Hi" (1 token in, 4 out, $3 / $15)
    rollout = start(models, phase="shadow", shadow_percent=100, shadow_budget_usd=2 * one_copy, min_requests=1000)

    for _ in range(6):
        ask(hub)
    runtime().ledger.flush()

    copies = UsageRecord.objects.filter(arm="shadow")
    rollout = fresh(rollout)
    assert copies.count() == rollout.shadow_requests < 6
    assert rollout.shadow_spent_usd == sum(c.cost_usd for c in copies) >= rollout.shadow_budget_usd
    assert rollout.shadow_spent_usd - copies.order_by("-created_at").first().cost_usd < rollout.shadow_budget_usd
    assert not runtime().routing.current_sync().routes["pam"].rollout.shadow_open
    assert len(sim.calls_for("cand-m")) == copies.count()


def test_a_share_of_requests_is_copied(hub, sim, models):
    start(models, phase="shadow", shadow_percent=30, min_requests=1000)

    for _ in range(60):
        ask(hub)

    assert 5 <= len(sim.calls_for("cand-m")) <= 35


def test_shadow_copies_that_pass_move_the_rollout_to_its_first_canary_step(hub, sim, models):
    rollout = start(models, phase="shadow", shadow_percent=100, min_requests=3, max_latency_ratio=100)

    for _ in range(10):
        ask(hub)
        runtime().ledger.flush()  # the copies' rows feed the live statistics
        if fresh(rollout).phase == "canary":
            break

    rollout = fresh(rollout)
    assert (rollout.phase, rollout.step, rollout.weight) == ("canary", 0, 1.0)
    assert rollout.reason.startswith("Step passed:")


def test_failing_copies_roll_the_rollout_back(hub, sim, models):
    rollout = start(models, phase="shadow", shadow_percent=100, min_requests=3)
    sim.set_fault("cand-m", status=503)

    answers = [ask(hub) for _ in range(3)]

    assert {a["model"] for a in answers} == {"stable-m"}
    rollout = fresh(rollout)
    assert rollout.phase == "rolled_back" and "shadow copies" in rollout.reason


@pytest.mark.django_db(transaction=True)
def test_a_copy_never_holds_the_answer_back(hub, sim, models, settings):
    """With the rollout work in its background thread, as served: the copy hangs on the
    candidate while the caller has its answer."""
    settings.MODELHUB = {**settings.MODELHUB, "ROLLOUT_BACKGROUND": True}
    start(models, phase="shadow", shadow_percent=100, min_requests=1000)
    sim.set_fault("cand-m", hang=True)
    try:
        body = hub.chat({"message": "Hi"}).json()
        assert body["model"] == "stable-m"
        deadline = time.monotonic() + 10
        while not sim.calls_for("cand-m"):  # the copy reaches the candidate, and hangs there
            assert time.monotonic() < deadline, "no copy was replayed"
            time.sleep(0.02)
    finally:
        sim.release_hangs()
    counts = runtime().routing.current_sync().routes["pam"].rollout.counts
    deadline = time.monotonic() + 10
    while not rollouts.rollout_work().counts.read(counts).requests:  # released, the copy is counted
        assert time.monotonic() < deadline, "the copy never finished"
        time.sleep(0.02)
    assert Rollout.objects.get().shadow_requests == 1


def test_a_request_the_candidate_cannot_serve_is_not_copied(hub, sim, models):
    models[2].supports_tools = False
    models[2].save()
    rollout = start(models, phase="shadow", shadow_percent=100, min_requests=1000)
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}

    body = ask(hub, tools=[weather])

    assert body["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sim.calls_for("cand-m") == [] and fresh(rollout).shadow_requests == 0


def test_a_copy_crosses_the_task_queue_whole():
    """What a broker carries is JSON: the request comes out of it as it went in."""
    from modelhub.providers.base import ChatRequest, Image, Message, ResponseFormat, Tool, ToolCall

    request = ChatRequest(
        messages=(
            Message("user", "What is in it?", images=(Image("data:image/png;base64,AA==", "image/png", "AA=="),)),
            Message("assistant", "", tool_calls=(ToolCall("call-1", "look", '{"at": "it"}'),)),
            Message("tool", "a cat", tool_call_id="call-1", name="look"),
        ),
        system="Be brief.",
        max_tokens=20,
        temperature=0.5,
        tools=(Tool("look", "Look at it", {"type": "object"}, strict=True),),
        tool_choice="auto",
        response_format=ResponseFormat("json_schema", {"type": "object"}, "answer", True),
        stop=("END",),
        metadata={"user_id": "u1"},
    )

    assert rollouts.request_load(orjson.loads(orjson.dumps(rollouts.request_dump(request)))) == request


def test_shadow_copies_are_calls_in_the_metrics_but_no_clients_requests(hub, sim, models):
    from modelhub.observability.metrics import hub_metrics_reset
    from tests.observability.conftest import samples, value

    hub_metrics_reset()
    start(models, phase="shadow", shadow_percent=100, min_requests=1000)
    for _ in range(3):
        ask(hub)
    assert len(sim.calls_for("cand-m")) == 3  # every request was copied

    parsed = samples(hub.client.get("/metrics").content.decode())
    assert value(parsed, "modelhub_requests_total", route="pam") == 3  # the callers' requests only
    assert value(parsed, "modelhub_attempts_total", route="pam", model="cand-m") == 3  # the copies' calls
    hub_metrics_reset()

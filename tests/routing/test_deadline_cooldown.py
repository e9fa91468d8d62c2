"""A route whose deadline is at or below its time to first token: a model that accepts the
request and never answers is cut by the deadline. For a stream given the whole budget (no
earlier attempt used any) that is the model's fault: it cools, and the fallback answers the
next requests. Cut by what earlier attempts left over, it is not; nor is a plain call, whose
first token comes with its whole answer (a long answer from a healthy model is no fault)."""

import asyncio
import time
import urllib.error
import urllib.request
import uuid

import orjson
import pytest

from modelhub.models import ModelHealth
from modelhub.providers.base import ErrorKind, ProviderError
from modelhub.routing.health import COOLING_DOWN, HEALTHY, Health
from modelhub.routing.router import DeadlineExceeded, Failover
from modelhub.routing.trial import trial_take
from modelhub.runtime import runtime
from tests.hubserver import hub_server, live  # noqa: F401 - fixtures

BUDGET_MS = 300


def _route(hub, first, second):
    """Route "pam": ``first`` then ``second``, under a 300 ms deadline."""
    route = hub.route("pam", [hub.model(first, "openai"), hub.model(second, "google")])
    route.latency_budget_ms = BUDGET_MS
    route.save()
    return runtime().routing.current_sync().routes["pam"]


def _request(route, call, *, stream=False):
    """One request through the router: (who answered, or "504"; its attempts' outcomes)."""

    async def one():
        failover = Failover(route, key=None, request_id=uuid.uuid4().hex, stream=stream)
        try:
            success = await failover.run(call)
        except DeadlineExceeded as exc:
            return "504", [a.outcome for a in exc.attempts]
        failover.answered(success, (1, 1))
        return success.model.model_id, [a.outcome for a in failover.attempts]

    return asyncio.run(one())


def _hung_then_fine(tried):
    async def call(model):
        tried.append(model.model_id)
        if model.model_id == "hung":
            await asyncio.sleep(3600)  # accepted, never answered (the provider's timeout is longer)
        return model.model_id

    return call


def test_a_stream_cut_with_the_whole_budget_cools_and_the_fallback_answers_the_next_requests(hub):
    route, tried = _route(hub, "hung", "fine"), []
    call = _hung_then_fine(tried)

    assert _request(route, call, stream=True) == ("504", ["timeout"])  # no time left to fail over
    assert [_request(route, call, stream=True) for _ in range(3)] == [("fine", ["ok"])] * 3
    assert tried == ["hung", "fine", "fine", "fine"]
    health = runtime().routing.board.get(route.chain[0].pk)
    assert (health.state, health.consecutive_failures, health.last_error_kind) == (COOLING_DOWN, 1, "timeout")
    assert health.last_error_message == f"no first token within the route's whole {BUDGET_MS} ms deadline"
    assert health.cooldown_reason == "timeout: 300 s × 1 time in a row = 300 s"


def test_a_plain_call_cut_by_the_deadline_does_not_count_against_its_model(hub):
    route, tried = _route(hub, "slow", "fine"), []

    async def call(model):  # a long answer: its first token would come with all of it
        tried.append(model.model_id)
        await asyncio.sleep(3600 if model.model_id == "slow" else 0)
        return model.model_id

    assert _request(route, call) == ("504", ["timeout"])
    health = runtime().routing.board.get(route.chain[0].pk)
    assert (health.state, health.consecutive_failures) == (HEALTHY, 0)


def test_an_attempt_cut_by_what_earlier_attempts_left_does_not_count_against_its_model(hub):
    route = _route(hub, "slow-failing", "hung")

    async def call(model):
        await asyncio.sleep(0.15 if model.model_id == "slow-failing" else 3600)
        raise ProviderError(ErrorKind.SERVER, "upstream 500")

    assert _request(route, call) == ("504", ["server", "timeout"])
    board = runtime().routing.board
    assert board.get(route.chain[0].pk).state == COOLING_DOWN  # its own failure
    hung = board.get(route.chain[1].pk)
    assert (hung.state, hung.consecutive_failures) == (HEALTHY, 0)  # had 150 ms of 300: says nothing of it


def test_a_trial_cut_with_the_whole_budget_is_a_verdict(hub):
    route = _route(hub, "hung", "fine")
    hung = route.chain[0]
    ended = round(time.time() - 0.5, 3)
    runtime().routing.board.set(hung.pk, Health(state=COOLING_DOWN, cooldown_until=ended, consecutive_failures=1))

    assert _request(route, _hung_then_fine([]), stream=True) == ("504", ["timeout"])
    health = runtime().routing.board.get(hung.pk)
    assert (health.state, health.consecutive_failures) == (COOLING_DOWN, 2)  # out again, for longer
    assert health.cooldown_reason.startswith("its trial request failed (timeout)")
    # the token stays held until it expires: workers that have not heard yet still skip the model
    assert asyncio.run(trial_take(pk=hung.pk, cooldown_until=ended)) is None


@pytest.mark.parametrize("slow", ["budget hold", "trial token"])
def test_the_deadline_starts_with_the_first_attempt_so_a_blamed_stream_model_had_all_of_it(hub, monkeypatch, slow):
    """What a request does before its first attempt (holding its budget in Redis, taking a
    recovering model's trial token: each up to Redis's timeout when Redis is slow) is not
    taken from that attempt's time: a hung model given less than the whole budget would be
    cooled for what it was never given."""
    route, delay = _route(hub, "hung", "fine"), 0.8 * BUDGET_MS / 1000
    if slow == "trial token":
        admit = Failover.trial_admit

        async def slow_admit(self, model):
            await asyncio.sleep(delay)
            return await admit(self, model)

        monkeypatch.setattr(Failover, "trial_admit", slow_admit)

    async def one() -> float:
        failover = Failover(route, key=None, request_id=uuid.uuid4().hex, stream=True)
        if slow == "budget hold":
            await asyncio.sleep(delay)  # before the walk, as chat.py holds the budget
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await failover.run(_hung_then_fine([]))
        return time.monotonic() - started

    waited = asyncio.run(one()) - (delay if slow == "trial token" else 0)
    assert waited >= 0.95 * BUDGET_MS / 1000  # the whole budget, not the 60 ms left after the delay
    health = runtime().routing.board.get(route.chain[0].pk)
    assert (health.state, health.last_error_kind) == (COOLING_DOWN, "timeout")


def _stream(live) -> tuple[int, bytes]:
    """A streamed chat request through the live server: its status and body."""
    request = urllib.request.Request(
        f"{live.server.url}/api/v1/pam/chat",
        data=orjson.dumps({"message": "Hi", "stream": True}),
        headers={"Authorization": f"Bearer {live.key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.django_db(transaction=True)
def test_a_hung_primary_under_the_route_deadline_is_cooled_and_the_fallback_answers(live, sim):
    # one wire format for both: the fallback's SDK client is warm by its turn, its first token quick
    route = live.route("pam", [live.model("hung", "openai"), live.model("fine", "openai")])
    route.latency_budget_ms = 1000
    route.save()
    sim.set_fault("hung", hang=True)

    status, body = _stream(live)
    assert status == 504
    assert [a["outcome"] for a in orjson.loads(body)["error"]["attempts"]] == ["timeout"]
    runtime().ledger.flush()
    stored = ModelHealth.objects.get(model__model_id="hung")
    assert (stored.state, stored.last_error_kind, stored.consecutive_failures) == ("cooling_down", "timeout", 1)

    seen = len(sim.calls)
    answers = [_stream(live) for _ in range(2)]
    assert [(status, b"event: done" in body) for status, body in answers] == [(200, True)] * 2
    assert [c.model for c in sim.calls[seen:]] == ["fine", "fine"]

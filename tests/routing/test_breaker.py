"""Circuit breaker semantics: lengthening cooldowns, the later deadline kept, and one trial
request at a time for a model whose cooldown has passed, in one process and across two."""

import asyncio
import threading
import time
import uuid

import pytest
from django.conf import settings as django_settings

from modelhub.models import ModelHealth
from modelhub.providers.base import ErrorKind, ProviderError
from modelhub.routing.health import COOLING_DOWN, HEALTHY, Health, health_transition
from modelhub.routing.router import CallerError, Failover
from modelhub.routing.trial import LocalTrials, RedisTrials, Trial, trial_release, trial_take
from modelhub.runtime import runtime
from tests.e2e.conftest import needs_postgres, needs_redis, servers_running

NOW = 1_700_000_000.0
SERVER = ProviderError(ErrorKind.SERVER, "upstream 500")
needs_redis_url = pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL")


def _fail(health, now, error=SERVER, base=10.0, cap=25.0):
    return health_transition(health, error=error, now=now, cooldown_seconds=base, cooldown_max_seconds=cap)


# --- Cooldowns --------------------------------------------------------------------------


def test_repeated_failures_lengthen_the_cooldown_up_to_the_cap():
    health, now, waits = Health(), NOW, []
    for _ in range(4):
        health = _fail(health, now)
        waits.append(round(health.cooldown_until - now, 3))
        now = health.cooldown_until + 1  # the trial after the cooldown fails again
    assert waits == [10.0, 20.0, 25.0, 25.0]
    assert health.consecutive_failures == 4
    assert health.last_error_kind == "server"


def test_a_failure_while_cooling_keeps_the_later_deadline():
    cooling = Health(state=COOLING_DOWN, cooldown_until=NOW + 100, consecutive_failures=1)
    again = _fail(cooling, NOW + 1)
    assert again.cooldown_until == NOW + 100  # 10 s from now would have shortened it
    assert again.consecutive_failures == 1  # a request already under way: not taken out again


def test_a_failure_while_cooling_may_push_the_deadline_later():
    cooling = Health(state=COOLING_DOWN, cooldown_until=NOW + 5, consecutive_failures=1)
    again = _fail(cooling, NOW + 1, error=ProviderError(ErrorKind.RATE_LIMITED, "429", retry_after=20))
    assert again.cooldown_until == NOW + 21
    assert again.consecutive_failures == 1


def test_retry_after_wins_over_the_lengthened_cooldown():
    third = Health(state=COOLING_DOWN, cooldown_until=NOW - 1, consecutive_failures=2)
    health = _fail(third, NOW, error=ProviderError(ErrorKind.RATE_LIMITED, "429", retry_after=3))
    assert health.cooldown_until == NOW + 3
    assert health.consecutive_failures == 3


def test_each_cooldown_says_why_it_lasts_as_long_as_it_does():
    first = _fail(Health(), NOW)
    assert first.cooldown_reason == "server: 10 s × 1 time in a row = 10 s"
    trial = _fail(first, first.cooldown_until + 1)  # half open: its trial fails
    assert trial.cooldown_reason == "its trial request failed (server): 10 s × 2 times in a row = 20 s"
    capped = _fail(trial, trial.cooldown_until + 1)
    assert capped.cooldown_reason == "its trial request failed (server): 10 s × 3 times in a row, capped at 25 s"
    limited = _fail(Health(), NOW, error=ProviderError(ErrorKind.RATE_LIMITED, "429", retry_after=7))
    assert limited.cooldown_reason == "rate_limited: the provider's Retry-After, 7 s"
    cooling = Health(state=COOLING_DOWN, cooldown_until=NOW + 100, consecutive_failures=1)
    kept = _fail(cooling, NOW + 1)
    assert kept.cooldown_reason == "server: 10 s × 1 time in a row = 10 s; a later deadline already set was kept"


def test_the_cooldown_reason_reaches_admin_and_the_admin_api_and_a_reset_clears_it(hub, sim, admin_client):
    primary = hub.model("flaky-reason", "openai")
    hub.route("pam", [primary, hub.model("steady-reason", "google")])
    sim.set_fault("flaky-reason", status=503)
    assert hub.chat().json()["model"] == "steady-reason"
    health = ModelHealth.objects.get(model=primary)
    assert health.cooldown_reason == "overloaded: 300 s × 1 time in a row = 300 s"
    page = admin_client.get("/admin/modelhub/modelhealth/").content.decode()
    assert health.cooldown_reason in page
    listed = admin_client.get("/api/v1/admin/models/health").json()
    assert {m["model_id"]: m["cooldown_reason"] for m in listed}["flaky-reason"] == health.cooldown_reason
    admin_client.post(
        "/admin/modelhub/modelhealth/", {"action": "reset_health", "_selected_action": [health.pk]}, follow=True
    )
    health.refresh_from_db()
    assert (health.state, health.cooldown_reason) == ("healthy", "")


def test_success_clears_the_streak():
    health = health_transition(
        Health(state=COOLING_DOWN, cooldown_until=NOW - 1, consecutive_failures=3),
        error=None,
        now=NOW,
        cooldown_seconds=10,
    )
    assert (health.state, health.consecutive_failures, health.cooldown_until) == (HEALTHY, 0, 0.0)


def test_a_failed_trial_cools_the_model_again_for_longer(hub, sim, settings):
    settings.MODELHUB = {**settings.MODELHUB, "COOLDOWN_SECONDS": 0.2}
    primary = hub.model("flaky", "openai")
    hub.route("pam", [primary, hub.model("steady", "google")])
    sim.set_fault("flaky", status=500)
    hub.chat()
    first = ModelHealth.objects.get(model=primary)
    time.sleep(0.3)
    before = time.time()
    assert hub.chat().json()["attempts"][0]["outcome"] == "server"  # the trial
    after = time.time()
    health = ModelHealth.objects.get(model=primary)
    assert health.consecutive_failures == first.consecutive_failures + 1 == 2
    # 2 x 0.2 s from the failure, which happened between before and after (however slow).
    assert before + 0.4 - 0.01 <= health.cooldown_until.timestamp() <= after + 0.4 + 0.01
    assert (health.last_error_kind, health.state) == ("server", "cooling_down")


# --- The trial gate ---------------------------------------------------------------------


async def test_local_gate_admits_one_holder_until_release_or_expiry():
    gate = LocalTrials()
    assert await gate.take("k", "a", 30)
    assert not await gate.take("k", "b", 30)
    assert await gate.take("other-deadline", "c", 30)
    gate.release(Trial("k", "b"))  # not the holder: nothing happens
    assert not await gate.take("k", "b", 30)
    gate.release(Trial("k", "a"))
    assert await gate.take("k", "b", 0.05)
    await asyncio.sleep(0.06)
    assert await gate.take("k", "d", 30)


@needs_redis_url
async def test_redis_gate_admits_one_holder_until_release_or_expiry():
    gate, key = RedisTrials(django_settings.REDIS_URL), f"modelhub:trial:test:{uuid.uuid4().hex}"
    assert await gate.take(key, "a", 30)
    assert not await gate.take(key, "b", 30)
    gate.release(Trial(key, "b"))
    await asyncio.gather(*gate._pending)
    assert not await gate.take(key, "b", 30)
    gate.release(Trial(key, "a"))
    await asyncio.gather(*gate._pending)
    assert await gate.take(key, "b", 0.05)
    await asyncio.sleep(0.1)
    assert await gate.take(key, "c", 30)


async def test_redis_gate_down_admits_every_request():
    gate = RedisTrials("redis://127.0.0.1:1/0")
    assert await gate.take("k", "a", 30)
    assert await gate.take("k", "b", 30)


def _half_open_route(hub):
    """Route "pam": a model whose cooldown has just passed, then a healthy fallback."""
    hub.route("pam", [hub.model("recovering", "openai"), hub.model("fallback", "google")])
    route = runtime().routing.current_sync().routes["pam"]
    runtime().routing.board.set(
        route.chain[0].pk,
        Health(state=COOLING_DOWN, cooldown_until=round(time.time() - 0.5, 3), consecutive_failures=1),
    )
    return route


def _requests(route, count, call):
    async def one():
        failover = Failover(route, key=None, request_id=uuid.uuid4().hex)
        success = await failover.run(call)
        failover.answered(success, (1, 1))
        return success.model.model_id

    async def all_of_them():
        return await asyncio.gather(*(one() for _ in range(count)))

    return asyncio.run(all_of_them())


def test_half_open_model_takes_one_trial_the_rest_skip_it(hub):
    route, tried = _half_open_route(hub), []

    async def call(model):
        tried.append(model.model_id)
        await asyncio.sleep(0.2 if model.model_id == "recovering" else 0)
        return model.model_id

    answered = _requests(route, 5, call)
    assert tried.count("recovering") == 1
    assert sorted(answered) == ["fallback"] * 4 + ["recovering"]
    assert runtime().routing.board.get(route.chain[0].pk).state == HEALTHY
    assert _requests(route, 2, call) == ["recovering", "recovering"]  # healthy: no gate


def test_a_trial_without_verdict_gives_the_token_back(hub):
    route = _half_open_route(hub)
    recovering = route.chain[0]

    async def refused(model):
        raise ProviderError(ErrorKind.BAD_REQUEST, "your request is malformed")

    with pytest.raises(CallerError):
        _requests(route, 1, refused)
    health = runtime().routing.board.get(recovering.pk)
    assert health.state == COOLING_DOWN  # still half open: the caller's error says nothing

    async def retake():
        trial = await trial_take(pk=recovering.pk, cooldown_until=health.cooldown_until)
        assert trial is not None
        trial_release(trial)

    asyncio.run(retake())


def test_a_failed_trial_holds_the_model_out_on_its_new_deadline(hub):
    route = _half_open_route(hub)

    async def failing(model):
        if model.model_id == "recovering":
            raise ProviderError(ErrorKind.SERVER, "still down")
        return model.model_id

    assert _requests(route, 1, failing) == ["fallback"]
    health = runtime().routing.board.get(route.chain[0].pk)
    assert (health.state, health.consecutive_failures) == (COOLING_DOWN, 2)
    assert health.cooldown_until > time.time()


# --- Across two processes ---------------------------------------------------------------


@needs_postgres
@needs_redis
@pytest.mark.django_db(transaction=True)
def test_exactly_one_trial_for_a_recovering_model_across_two_processes(hub, sim):
    hub.route("pam", [hub.model("recovering-m", "anthropic"), hub.model("fallback-m", "google")])
    with servers_running(2, MODELHUB_COOLDOWN_SECONDS="3") as (a, b):
        assert b.chat(hub.key)["model"] == "recovering-m"  # B's snapshot is warm
        sim.set_fault("recovering-m", status=500, times=1)
        assert a.chat(hub.key)["model"] == "fallback-m"
        health = _stored_health("recovering-m", lambda h: h.state == "cooling_down")
        assert b.chat(hub.key)["model"] == "fallback-m"  # B has heard of the cooldown
        time.sleep(max(0.0, health.cooldown_until.timestamp() - time.time()) + 0.2)

        sim.set_fault("recovering-m", latency_ms=2000, times=1)  # a slow trial: the rest arrive during it
        seen = len(sim.calls)
        answers = _concurrently([a, b] * 5, hub.key)
        trials = [c for c in sim.calls[seen:] if c.model == "recovering-m"]
        assert len(trials) == 1
        assert sorted(answers) == ["fallback-m"] * 9 + ["recovering-m"]
        _stored_health("recovering-m", lambda h: h.state == "healthy")


def _stored_health(model_id, ready, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        health = ModelHealth.objects.filter(model__model_id=model_id).first()
        if health is not None and ready(health):
            return health
        assert time.monotonic() < deadline, f"health of {model_id} never became as expected"
        time.sleep(0.05)


def _concurrently(servers, key):
    answers, start = [], threading.Barrier(len(servers))

    def ask(server):
        start.wait()
        answers.append(server.chat(key)["model"])

    threads = [threading.Thread(target=ask, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers

"""A half-open model's trial token always comes back when its trial ends without a verdict:
also when the request is cancelled while the gate is setting the token, and when the loop
the request ran on ends right after it (asyncio.run, as shadow calls do)."""

import asyncio
import time
import uuid

import pytest
from django.conf import settings as django_settings

from modelhub.providers.base import ErrorKind, ProviderError
from modelhub.routing.health import COOLING_DOWN, Health
from modelhub.routing.router import CallerError, Failover
from modelhub.routing.trial import LocalTrials, RedisTrials, trial_key
from modelhub.runtime import runtime

GATES = [
    "local",
    pytest.param("redis", marks=pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL")),
]


@pytest.fixture(params=GATES)
def gate(request, monkeypatch):
    """The trial gate every request of the test uses: in this process, or Redis."""
    made = LocalTrials() if request.param == "local" else RedisTrials(django_settings.REDIS_URL)
    monkeypatch.setattr(runtime(), "trials", made)
    return made


class AnsweredLate:
    """A gate whose take is applied at once, but whose answer has not come back yet (Redis
    set the key; the reply is on its way) when the request is cancelled."""

    def __init__(self, gate):
        self.gate = gate
        self.applied: asyncio.Event | None = None

    async def take(self, key, token, seconds):
        taken = await self.gate.take(key, token, seconds)
        assert self.applied is not None
        self.applied.set()
        await asyncio.sleep(3600)
        return taken

    def release(self, trial):
        return self.gate.release(trial)


def _half_open_route(hub):
    """Route "pam": a model whose cooldown has just passed, then a healthy fallback; and the
    key of the recovering model's trial token."""
    hub.route("pam", [hub.model("recovering", "openai"), hub.model("fallback", "google")])
    route = runtime().routing.current_sync().routes["pam"]
    ended = round(time.time() - 0.5, 3)
    runtime().routing.board.set(
        route.chain[0].pk, Health(state=COOLING_DOWN, cooldown_until=ended, consecutive_failures=1)
    )
    return route, trial_key(route.chain[0].pk, ended)


async def _answered(model):
    return model.model_id


def test_a_request_cancelled_while_its_trial_token_is_set_gives_it_back(hub, gate, monkeypatch):
    route, key = _half_open_route(hub)
    late = AnsweredLate(gate)
    monkeypatch.setattr(runtime(), "trials", late)

    async def cancelled_mid_take():
        late.applied = asyncio.Event()
        request = asyncio.create_task(Failover(route, key=None, request_id=uuid.uuid4().hex).run(_answered))
        await late.applied.wait()  # the token is set: the client leaves before the gate answers
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        return await gate.take(key, "the next request", 30)

    assert asyncio.run(cancelled_mid_take())  # not held by a request that is gone


def test_a_trial_given_back_just_before_its_loop_ends_is_given_back(hub, gate):
    route, key = _half_open_route(hub)

    async def refused(model):
        raise ProviderError(ErrorKind.BAD_REQUEST, "your request is malformed")  # no verdict on the model

    async def shadow_call():  # as rollouts' shadow calls do: one request, on a loop of its own
        failover = Failover(route, key=None, request_id=uuid.uuid4().hex)
        try:
            with pytest.raises(CallerError):
                await failover.run(refused)
        finally:
            await failover.trials_returned()

    asyncio.run(shadow_call())
    assert asyncio.run(gate.take(key, "the next request", 30))


class SlowRelease:
    """A gate whose deletes take half a second to come back (a slow Redis)."""

    def __init__(self):
        self.gate, self.released = LocalTrials(), asyncio.Event()

    async def take(self, key, token, seconds):
        return await self.gate.take(key, token, seconds)

    def release(self, trial):
        async def later():
            await asyncio.sleep(0.5)
            self.gate.release(trial)
            self.released.set()

        return asyncio.get_running_loop().create_task(later())


def test_an_answer_does_not_wait_for_a_trial_token_to_come_back(hub, monkeypatch):
    """The recovering model answers "context too long" (no verdict: its token goes back) and
    the next model answers: the answer is returned at once, not after the token's delete, so
    a client that leaves meanwhile cannot make the hub lose an answer already paid for."""
    hub.route("pam", [hub.model("recovering", "openai", context_window=8000), hub.model("big", "google")])
    route = runtime().routing.current_sync().routes["pam"]
    ended = round(time.time() - 0.5, 3)
    runtime().routing.board.set(
        route.chain[0].pk, Health(state=COOLING_DOWN, cooldown_until=ended, consecutive_failures=1)
    )
    slow = SlowRelease()
    monkeypatch.setattr(runtime(), "trials", slow)

    async def call(model):
        if model.model_id == "recovering":
            raise ProviderError(ErrorKind.CONTEXT_TOO_LONG, "too long")
        return model.model_id

    async def scenario():
        failover = Failover(route, key=None, request_id=uuid.uuid4().hex)
        success = await asyncio.wait_for(failover.run(call), timeout=0.3)  # the delete takes 0.5 s
        assert not slow.released.is_set()
        await failover.trials_returned()
        return success.value, slow.released.is_set()

    assert asyncio.run(scenario()) == ("big", True)

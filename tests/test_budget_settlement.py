"""A hold does not outlive its request: a settlement that cannot reach Redis (its breaker
open for a second after another call's timeout, though Redis is fine) is tried again in
the background, then logged with the key and the amount; a settlement is applied once
however often it is tried; and a request cancelled while its hold is on its way to Redis
or back (its client went away) releases it."""

import asyncio
import logging
import os
import time
from decimal import Decimal

import pytest
import redis
import redis.exceptions
from django.conf import settings as django_settings

from modelhub import limits
from modelhub.limits import LimitExceeded, budget_reserve, budget_settle
from modelhub.redis_clients import RETRY_SECONDS
from modelhub.routing.snapshot import KeySpec
from modelhub.runtime import runtime

pytestmark = pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL")

WORST = Decimal("0.40")


@pytest.fixture
def counters(monkeypatch):
    """Counters in Redis, under a key prefix of this test's own (other test runs on the same
    Redis clear the hub's prefix as they start)."""
    monkeypatch.setattr(limits, "PREFIX", f"modelhub:test-budget:{os.urandom(6).hex()}:")
    made = limits.RedisCounters(django_settings.REDIS_URL)
    monkeypatch.setattr(runtime(), "counters", made)
    monkeypatch.setattr(limits, "SETTLE_RETRY_SECONDS", (0.1, 0.2, 0.4), raising=False)  # 0.7 s, not 15
    yield made
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    for name in client.scan_iter(f"{limits.PREFIX}*"):
        client.delete(name)


def _key(pk: int) -> KeySpec:
    return KeySpec(pk=pk, name="k", is_staff=False, daily_budget_usd=Decimal("1"))


async def _spent(counters, key: KeySpec) -> Decimal:
    """The key's spend today, read past the counters' breaker."""
    found = redis.Redis.from_url(django_settings.REDIS_URL).get(limits._day_key(key.pk, time.time()))
    return Decimal(int(found or 0)) / limits.PICO


async def _spent_becomes(counters, key: KeySpec, expected: Decimal, seconds: float = 2.0) -> Decimal:
    """The key's spend once it is ``expected``, or as it is after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (spent := await _spent(counters, key)) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return spent


def _slow_replies(monkeypatch, counters, seconds: float) -> None:
    """Each Redis call is made at once, and its reply takes ``seconds`` to come back."""
    call = counters.redis.call

    async def slow(fn):
        result = await call(fn)
        await asyncio.sleep(seconds)
        return result

    monkeypatch.setattr(counters.redis, "call", slow)


def _one_reply_lost(monkeypatch, counters) -> None:
    """The next Redis call is made, but its reply times out (as a hung socket's would)."""
    call, lost = counters.redis.call, []

    async def flaky(fn):
        result = await call(fn)
        if not lost:
            lost.append(True)
            raise redis.exceptions.TimeoutError("Timeout reading from socket")
        return result

    monkeypatch.setattr(counters.redis, "call", flaky)


def test_a_settlement_the_breaker_refused_is_tried_again(counters):
    """The reviewer's proof: another call's timeout opened the breaker for a second; the
    release of a failed request failed at once, Redis being fine, and its $0.40 stayed held
    for the rest of the day."""
    key = _key(4301)

    async def scenario():
        held = await budget_reserve(key=key, worst=WORST)
        counters.redis._down_until = time.monotonic() + 0.15  # as after a 0.5 s timeout elsewhere
        await budget_settle(reservation=held, cost=Decimal(0))
        right_after = await _spent(counters, key)
        return right_after, await _spent_becomes(counters, key, Decimal(0))

    right_after, later = asyncio.run(scenario())
    assert right_after == WORST  # refused by the breaker: held meanwhile (overcounted, never under)
    assert later == 0


def test_a_settlement_that_never_reaches_redis_is_logged_with_the_key_and_the_amount(counters, caplog):
    key = _key(4302)

    async def scenario():
        held = await budget_reserve(key=key, worst=WORST)
        counters.redis._down_until = time.monotonic() + 3600  # the breaker stays open
        await budget_settle(reservation=held, cost=Decimal("0.25"))
        await asyncio.sleep(1.0)  # the retries (0.7 s) are over
        counters.redis._down_until = 0.0
        return await _spent(counters, key)

    with caplog.at_level(logging.WARNING, logger="modelhub.limits"):
        spent = asyncio.run(scenario())
    assert spent == WORST  # still held: overcounted, never under
    (given_up,) = [r for r in caplog.records if r.levelno == logging.WARNING and "settlement" in r.getMessage()]
    assert "API key 4302" in given_up.getMessage() and "$0.4 " in given_up.getMessage()
    assert "real cost $0.25" in given_up.getMessage()


def test_a_settlement_whose_reply_was_lost_is_applied_once(counters, monkeypatch):
    """Its retry finds the hold settled already: $0.40 held, $0.10 real, $0.10 spent (a
    retry that applied the difference again would leave -$0.20)."""
    key = _key(4303)

    async def scenario():
        held = await budget_reserve(key=key, worst=WORST)
        _one_reply_lost(monkeypatch, counters)
        await budget_settle(reservation=held, cost=Decimal("0.10"))
        await asyncio.sleep(1.0)  # its retries (0.7 s) are over
        return await _spent(counters, key)

    assert asyncio.run(scenario()) == Decimal("0.10")


def test_a_reservation_whose_reply_was_lost_is_released(counters, monkeypatch):
    """The hold was made but its reply timed out: the request is refused (the budget fails
    closed), and the hold it never heard of is released (it was left for the day)."""
    key = _key(4304)

    async def scenario():
        _one_reply_lost(monkeypatch, counters)
        with pytest.raises(LimitExceeded) as refused:
            await budget_reserve(key=key, worst=WORST)
        return refused.value, await _spent_becomes(counters, key, Decimal(0), seconds=RETRY_SECONDS + 1.5)

    refused, spent = asyncio.run(scenario())
    assert (refused.status, refused.code) == (503, "limits_unavailable")
    assert spent == 0


def test_a_reservation_cancelled_while_its_reply_is_on_the_way_is_released(counters, monkeypatch):
    """The client disconnected while the request waited on Redis (chat_complete and
    chat_stream await the reservation before their try): the hold was made, and nothing
    released it."""
    key = _key(4305)
    _slow_replies(monkeypatch, counters, 0.2)

    async def scenario():
        request = asyncio.ensure_future(budget_reserve(key=key, worst=WORST))
        await asyncio.sleep(0.1)  # the hold is made; its reply is on the way
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        return await _spent_becomes(counters, key, Decimal(0))

    assert asyncio.run(scenario()) == 0


def test_a_settlement_cancelled_with_its_request_still_applies(counters, monkeypatch):
    """A stream's end settles in the request's task: the client going away then must not
    stop the settlement half way."""
    key = _key(4306)

    async def scenario():
        held = await budget_reserve(key=key, worst=WORST)
        _slow_replies(monkeypatch, counters, 0.2)
        settling = asyncio.ensure_future(budget_settle(reservation=held, cost=Decimal("0.05")))
        await asyncio.sleep(0)  # under way
        settling.cancel()
        with pytest.raises(asyncio.CancelledError):
            await settling
        return await _spent_becomes(counters, key, Decimal("0.05"))

    assert asyncio.run(scenario()) == Decimal("0.05")


def test_a_release_that_arrives_before_its_hold_stops_it(counters):
    """A release sent after a lost reply may reach Redis before the hold it releases: the
    hold is then not made."""
    key = _key(4307)

    async def scenario():
        day = limits._day_key(key.pk, time.time())
        asked = limits.Reservation(key.pk, day, "a1b2c3", 400_000_000_000, known=False)
        assert await counters.settle(asked, 0)
        return await counters.reserve(asked, 10**12), await _spent(counters, key)

    found, spent = asyncio.run(scenario())
    assert found[0] < 0 and spent == 0

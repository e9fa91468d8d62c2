"""Per API key: the routes it may use, requests per minute and a daily budget in USD.

Counters are shared by every process through Redis (one round trip per request: a Lua
script admits the request into the key's last minute and reads the day's spend
atomically), or kept in this process when there is no Redis. A key without limits costs
nothing here.

Requests per minute is a sliding window: a log of the times of the requests admitted in
the last 60 seconds (a Redis sorted set). A key gets at most its RPM in any 60 seconds,
across a minute boundary too, and a refused request learns exactly when a slot frees (its
Retry-After). Refused requests are not logged, so a client that keeps retrying is let in
again once its oldest request is a minute old. The log holds at most RPM entries per key.
(A counter per minute with the previous one weighted is smaller, but assumes requests
spread evenly and so lets nearly twice the RPM through in some 60 seconds; a token bucket
(GCRA) lets a whole burst through plus the refill.)

Budgets are never overspent by more than one request: before its call a request
reserves its worst-case cost (capped by what is left of the day) in the day's spend,
atomically, and after it the reservation is settled to the real cost (released when
nothing was answered). Concurrent requests see each other's reservations, so together
they pass the budget by at most the one request whose reservation was capped.

If Redis is unreachable, each limit does what its setting says (``counters_unavailable``).
RPM fails open by default (``RPM_FAIL_OPEN``): it protects capacity, which a few
uncounted requests do not hurt, and an outage of the counters must not become an outage
of the hub. A budget fails closed by default (``BUDGET_FAIL_OPEN``): it is money, and
"never passed by more than one request" holds only while every request is counted; a key
with a budget gets 503 with a short Retry-After until Redis answers again, keys without
one are not affected. A settlement that cannot reach Redis leaves the worst case held:
the spend is overcounted, never undercounted."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from .redis_clients import LoopRedis
from .routing.snapshot import KeySpec
from .runtime import runtime

log = logging.getLogger("modelhub.limits")

PREFIX = "modelhub:limits:"
PICO = Decimal(10) ** 12  # spend is counted in pico-dollars: integers, exact at the ledger's precision
DAY = 86_400
WINDOW = 60  # seconds: requests per minute, over the last 60 seconds at any moment
UNAVAILABLE_RETRY_AFTER = 5  # seconds: a limit that fails closed while Redis is down
WARN_EVERY_SECONDS = 30.0
Clock = Callable[[], float]  # the time the counters' windows and days follow (tests move it)
# KEYS: the key's log of admitted requests (scores: times in ms), the day's spend.
# ARGV: now (ms), the RPM limit ('' for none), a name for this request's log entry.
# Returns {ms until the log has room (0: admitted and logged), the day's spend}.
_ADMIT = """
local wait = 0
if ARGV[2] ~= '' then
  local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
  local held = redis.call('ZCARD', KEYS[1])
  if held < limit then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], 60000)
  else
    local frees = redis.call('ZRANGE', KEYS[1], held - limit, held - limit, 'WITHSCORES')[2]
    wait = frees and tonumber(frees) + 60000 - now or 60000
  end
end
return {wait, redis.call('GET', KEYS[2]) or '0'}
"""
# Reserve min(worst case, what is left) of the day's budget, or -1 when nothing is left.
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local left = tonumber(ARGV[1]) - spent
if left <= 0 then return -1 end
local amount = math.min(tonumber(ARGV[2]), left)
redis.call('INCRBY', KEYS[1], amount)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return amount
"""


class LimitExceeded(Exception):
    """A request the key may not make; ``status`` is the HTTP status to give."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


def route_permit(*, key: KeySpec, route: str) -> None:
    if not key.may_use(route):
        raise LimitExceeded(403, "route_not_allowed", f"This API key may not use '{route}'.")


async def limits_check(*, key: KeySpec) -> None:
    """Admit this request into the key's last minute and check its day's spend."""
    if key.rpm_limit is None and key.daily_budget_usd is None:
        return
    counters = runtime().counters
    now = counters.clock()
    found = await counters.admit(key.pk, now, rpm=key.rpm_limit)
    if found is None:
        counters_unavailable(key)
        return
    wait, spent = found
    if wait > 0:
        raise LimitExceeded(
            429,
            "rate_limit_exceeded",
            f"Rate limit of {key.rpm_limit} requests per minute reached for this API key.",
            retry_after=max(1, math.ceil(wait)),
        )
    budget = key.daily_budget_usd
    if budget is not None and spent >= budget * PICO:
        raise budget_spent(budget, now)


def counters_unavailable(key: KeySpec) -> None:
    """The counters cannot be reached: allowed, unless one of the key's limits fails
    closed (settings ``RPM_FAIL_OPEN``, ``BUDGET_FAIL_OPEN``); then 503, retry shortly."""
    hub = settings.MODELHUB
    closed = (key.rpm_limit is not None and not hub["RPM_FAIL_OPEN"]) or (
        key.daily_budget_usd is not None and not hub["BUDGET_FAIL_OPEN"]
    )
    if closed:
        raise LimitExceeded(
            503,
            "limits_unavailable",
            "The limits of this API key cannot be checked right now (counters unavailable); try again shortly.",
            retry_after=UNAVAILABLE_RETRY_AFTER,
        )


def budget_spent(budget: Decimal, now: float) -> LimitExceeded:
    return LimitExceeded(
        429,
        "budget_exceeded",
        f"The daily budget of ${budget.normalize():f} of this API key is spent; it renews at 00:00 UTC.",
        retry_after=max(1, math.ceil(DAY - now % DAY)),
    )


@dataclass(frozen=True, slots=True)
class Reservation:
    """Pico-dollars held in one day's spend of one key until the request settles."""

    day_key: str
    pico: int


async def budget_reserve(*, key: KeySpec, worst: Decimal) -> Reservation | None:
    """Hold the request's worst-case cost (capped by what is left) in the key's spend of
    the day; raises LimitExceeded when nothing is left. None for a key without a budget,
    or when the counters cannot be reached and the key's limits fail open."""
    budget = key.daily_budget_usd
    if budget is None:
        return None
    counters = runtime().counters
    now = counters.clock()
    day = _day_key(key.pk, now)
    held = await counters.reserve(day, int(budget * PICO), max(1, math.ceil(worst * PICO)))
    if held is None:
        counters_unavailable(key)
        return None
    if held < 0:
        raise budget_spent(budget, now)
    return Reservation(day, held)


async def budget_settle(*, reservation: Reservation | None, cost: Decimal) -> None:
    """Replace the reservation by the real cost (0 when nothing was answered)."""
    if reservation is not None:
        await runtime().counters.adjust(reservation.day_key, math.ceil(cost * PICO) - reservation.pico)


def budget_settle_soon(*, reservation: Reservation | None, cost: Decimal) -> None:
    """budget_settle from code that cannot wait (a stream whose client has gone)."""
    if reservation is None:
        return
    task = asyncio.get_running_loop().create_task(budget_settle(reservation=reservation, cost=cost))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_pending: set[asyncio.Task] = set()


def _log_key(pk: int) -> str:
    return f"{PREFIX}{{{pk}}}:rpm-log"


def _day_key(pk: int, now: float) -> str:
    return f"{PREFIX}{{{pk}}}:spend:{int(now // DAY)}"


class LocalCounters:
    """One process (the embedded default): a log of request times per key and the spend
    per day, pruned once a minute. ``clock`` is the time the windows and days follow."""

    def __init__(self, clock: Clock = time.time):
        self.clock = clock
        self.values: dict[str, int] = {}
        self.logs: dict[int, deque[float]] = {}
        self._pruned_minute = -1

    async def admit(self, pk: int, now: float, *, rpm: int | None) -> tuple[float, int]:
        """(seconds until the key's last minute has room, 0 when this request was admitted
        and logged; the day's spend in pico-dollars)."""
        self._prune(now)
        wait = 0.0 if rpm is None else self._log_admit(pk, now, rpm)
        return wait, self.values.get(_day_key(pk, now), 0)

    def _log_admit(self, pk: int, now: float, rpm: int) -> float:
        times = self.logs.setdefault(pk, deque())
        while times and times[0] <= now - WINDOW:
            times.popleft()
        if len(times) < rpm:
            times.append(now)
            return 0.0
        frees = len(times) - rpm  # the entry whose leaving makes room (the limit may have been lowered)
        return times[frees] + WINDOW - now if frees < len(times) else float(WINDOW)

    async def reserve(self, day: str, budget: int, worst: int) -> int:
        left = budget - self.values.get(day, 0)
        if left <= 0:
            return -1
        held = min(worst, left)
        self.values[day] = self.values.get(day, 0) + held
        return held

    async def adjust(self, day: str, pico: int) -> None:
        self.values[day] = self.values.get(day, 0) + pico

    def _prune(self, now: float) -> None:
        """Once a minute: forget the logs gone quiet and the days gone by."""
        minute = int(now // WINDOW)
        if minute == self._pruned_minute:
            return
        self._pruned_minute = minute
        self.logs = {pk: times for pk, times in self.logs.items() if times and times[-1] > now - WINDOW}
        today = f":spend:{int(now // DAY)}"
        self.values = {k: v for k, v in self.values.items() if k.endswith(today)}


class RedisCounters:
    """Every process: the log and the day's spend of a key share a hash slot ({pk})."""

    def __init__(self, url: str, clock: Clock = time.time):
        self.clock = clock
        self.redis = LoopRedis(url, _ADMIT, _RESERVE)
        self._warned_at = 0.0

    async def admit(self, pk: int, now: float, *, rpm: int | None) -> tuple[float, int] | None:
        """As LocalCounters.admit; None when Redis cannot be reached."""
        keys = [_log_key(pk), _day_key(pk, now)]
        args = [round(now * 1000), "" if rpm is None else rpm, os.urandom(8).hex()]
        try:
            wait_ms, spent = await self.redis.call(lambda client, s: s[0](keys=keys, args=args, client=client))
        except Exception as exc:  # noqa: BLE001 - counters down: the settings decide
            self._warn(exc)
            return None
        return int(wait_ms) / 1000, int(spent)

    async def reserve(self, day: str, budget: int, worst: int) -> int | None:
        args = [budget, worst, 2 * DAY]
        try:
            return int(await self.redis.call(lambda client, s: s[1](keys=[day], args=args, client=client)))
        except Exception as exc:  # noqa: BLE001 - counters down: the settings decide
            self._warn(exc)
            return None

    async def adjust(self, day: str, pico: int) -> None:
        async def add(client, _scripts) -> None:
            async with client.pipeline(transaction=False) as pipe:
                await pipe.incrby(day, pico).expire(day, 2 * DAY).execute()

        try:
            await self.redis.call(add)
        except Exception as exc:  # noqa: BLE001 - the worst case stays held: overcounted, never under
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning("API key limits unavailable (Redis), each failing open or closed as set: %s", exc)


def counters_make() -> LocalCounters | RedisCounters:
    return RedisCounters(settings.REDIS_URL) if settings.REDIS_URL else LocalCounters()

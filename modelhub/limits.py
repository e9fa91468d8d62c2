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

Budgets are never overspent by more than one request's worst case: before its call a
request holds its worst-case cost in the day's spend, atomically, and after it the hold is
settled to the real cost (released when nothing was answered). Concurrent requests see
each other's holds. A hold is capped by what is left of the day; the part of the worst
case a capped hold leaves uncovered (its shortfall) is counted next to the spend, and a
request is refused (429, retry shortly) while the shortfalls out would pass its own worst
case. So after every hold, the spend plus the shortfalls out is at most the budget plus one
request's worst case, and no settlement raises that sum (a request costs at most its worst
case): the day ends within that bound. Many capped holds one after the other, each on the
sliver an earlier settlement freed, each costing its whole worst case, would not.

If Redis is unreachable, each limit does what its setting says (``counters_unavailable``).
RPM fails open by default (``RPM_FAIL_OPEN``): it protects capacity, which a few
uncounted requests do not hurt, and an outage of the counters must not become an outage
of the hub. A budget fails closed by default (``BUDGET_FAIL_OPEN``): it is money, and
"never passed by more than one request" holds only while every request is counted; a key
with a budget gets 503 with a short Retry-After until Redis answers again, keys without
one are not affected. A settlement that cannot reach Redis (or is refused by its breaker
for a second) is tried again in the background, a few times over ``SETTLE_RETRY_SECONDS``,
then logged at WARNING: meanwhile the worst case stays held, the spend overcounted, never
undercounted. Each hold has an id, and a settlement is applied once whatever the retries
(one whose reply was lost is not applied twice). A request cancelled while its hold was on
its way (its client went away) releases whatever the hold became."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from django.conf import settings

from .redis_clients import LoopRedis, RedisUnavailable
from .routing.snapshot import KeySpec
from .runtime import runtime

log = logging.getLogger("modelhub.limits")

PREFIX = "modelhub:limits:"
PICO = Decimal(10) ** 12  # spend is counted in pico-dollars: integers, exact at the ledger's precision
DAY = 86_400
WINDOW = 60  # seconds: requests per minute, over the last 60 seconds at any moment
UNAVAILABLE_RETRY_AFTER = 5  # seconds: a limit that fails closed while Redis is down
NEARLY_SPENT_RETRY_AFTER = 5  # seconds: what is left is held by requests under way, which end soon
# Pauses before each new try of a settlement that did not reach Redis (15 s in all: past a
# breaker's second open, and a blip of Redis; then it is logged and stays held).
SETTLE_RETRY_SECONDS = (1.0, 2.0, 4.0, 8.0)
WARN_EVERY_SECONDS = 30.0
LOST = (-4, 0)  # a reservation's reply was lost (a timeout, a dropped connection): held or not
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
# Hold min(worst case, what is left) of the day's budget for one request. A capped hold
# leaves a shortfall (worst case - held); one is refused while the shortfalls out would
# pass this request's worst case.
# KEYS: the day's spend, its holds (hash: request id -> "held shortfall"), the shortfalls out.
# ARGV: budget, worst case (pico-dollars), expiry (s), the request's id.
# Returns {held, shortfall}; held -1: nothing is left, -2: the shortfalls out leave no room,
# -3: the id was released already (its client went away before this ran).
_RESERVE = """
if redis.call('HEXISTS', KEYS[2], ARGV[4]) == 1 then return {-3, 0} end
local left = tonumber(ARGV[1]) - tonumber(redis.call('GET', KEYS[1]) or '0')
if left <= 0 then return {-1, 0} end
local worst = tonumber(ARGV[2])
local held, short = worst, 0
if worst > left then
  held, short = left, worst - left
  if tonumber(redis.call('GET', KEYS[3]) or '0') + short > worst then return {-2, 0} end
  redis.call('INCRBY', KEYS[3], string.format('%d', short))
  redis.call('EXPIRE', KEYS[3], ARGV[3])
end
redis.call('INCRBY', KEYS[1], string.format('%d', held))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[4], string.format('%d %d', held, short))
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {held, short}
"""
# Replace one hold by the request's real cost, once: a settlement tried again after its
# reply was lost finds the hold gone and does nothing. An id not held (yet) is marked
# released, so that a hold that arrives after its release is not made.
# KEYS: as _RESERVE. ARGV: the request's id, its real cost (pico-dollars), expiry (s).
# Returns 1 when applied, 0 when there was nothing to settle.
_SETTLE = """
local hold = redis.call('HGET', KEYS[2], ARGV[1])
if not hold then
  redis.call('HSET', KEYS[2], ARGV[1], '-')
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 0
end
if hold == '-' then return 0 end
local held, short = string.match(hold, '^(%d+) (%d+)$')
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DECRBY', KEYS[1], held)
redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if short ~= '0' then redis.call('DECRBY', KEYS[3], short) end
return 1
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


def budget_nearly_spent(budget: Decimal) -> LimitExceeded:
    """What is left is less than the request's worst case and requests under way hold it."""
    return LimitExceeded(
        429,
        "budget_exceeded",
        f"The daily budget of ${budget.normalize():f} of this API key is nearly spent and requests under way "
        "hold what is left; try again shortly.",
        retry_after=NEARLY_SPENT_RETRY_AFTER,
    )


@dataclass(frozen=True, slots=True)
class Reservation:
    """Pico-dollars held in one day's spend of one key until the request settles: ``pico``
    of them, ``short`` fewer than its worst case (a hold capped by what was left). ``id``
    names the hold, so that it is settled once."""

    key_pk: int
    day_key: str
    id: str
    pico: int
    short: int = 0
    known: bool = True  # False: a hold whose reply was lost (``pico``: the most it can be)


async def budget_reserve(*, key: KeySpec, worst: Decimal) -> Reservation | None:
    """Hold the request's worst-case cost (capped by what is left) in the key's spend of
    the day; raises LimitExceeded when nothing is left, or when the capped holds out leave
    no room for another. None for a key without a budget, or when the counters cannot be
    reached and the key's limits fail open.

    The hold runs to its end even if the caller is cancelled meanwhile (its client went
    away), and is then released; so is a hold whose reply was lost."""
    budget = key.daily_budget_usd
    if budget is None:
        return None
    counters = runtime().counters
    now = counters.clock()
    asked = Reservation(key.pk, _day_key(key.pk, now), os.urandom(8).hex(), max(1, math.ceil(worst * PICO)))
    task = asyncio.ensure_future(counters.reserve(asked, int(budget * PICO)))
    try:
        found = await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(lambda done: _release_orphan(counters, asked, done))
        raise
    if found is None or found == LOST:
        if found == LOST:  # the hold may have been made: released by its id
            _settle_task(counters, replace(asked, known=False), 0)
        counters_unavailable(key)
        return None
    held, short = found
    if held == -2:
        raise budget_nearly_spent(budget)
    if held < 0:
        raise budget_spent(budget, now)
    return replace(asked, pico=held, short=short)


def _release_orphan(counters: LocalCounters | RedisCounters, asked: Reservation, done: asyncio.Future) -> None:
    """The hold of a request cancelled while it was being made: released, whatever it became."""
    found = None if done.cancelled() or done.exception() else done.result()
    if found is None or found == LOST:
        _settle_task(counters, replace(asked, known=False), 0)
    elif found[0] >= 0:
        _settle_task(counters, replace(asked, pico=found[0], short=found[1]), 0)


async def budget_settle(*, reservation: Reservation | None, cost: Decimal) -> None:
    """Replace the reservation by the real cost (0 when nothing was answered). Waits for
    the first try only (retries go on in the background), and is not stopped by the
    caller being cancelled."""
    if reservation is not None:
        await asyncio.shield(_settle_task(runtime().counters, reservation, math.ceil(cost * PICO)))


def budget_settle_soon(*, reservation: Reservation | None, cost: Decimal) -> None:
    """budget_settle from code that cannot wait (a stream whose client has gone)."""
    if reservation is not None:
        _settle_task(runtime().counters, reservation, math.ceil(cost * PICO))


def _settle_task(counters: LocalCounters | RedisCounters, reservation: Reservation, pico: int) -> asyncio.Task:
    return _spawn(_settle(counters, reservation, pico))


async def _settle(counters: LocalCounters | RedisCounters, reservation: Reservation, pico: int) -> None:
    """One try now; when it cannot reach Redis, the retries go on in a task of their own."""
    if not await counters.settle(reservation, pico):
        _spawn(_settle_retried(counters, reservation, pico))


async def _settle_retried(counters: LocalCounters | RedisCounters, reservation: Reservation, pico: int) -> None:
    """Tries again after each of SETTLE_RETRY_SECONDS, then gives up saying what stays held
    (at INFO for a hold that may never have been made: Redis was failing as it was asked)."""
    for pause in SETTLE_RETRY_SECONDS:
        await asyncio.sleep(pause)
        if await counters.settle(reservation, pico):
            return
    log.log(
        logging.WARNING if reservation.known else logging.INFO,
        "API key %s: a budget settlement could not reach Redis in %d tries over %gs; a hold of %s$%s "
        "(real cost $%s) stays in its spend of the day (%s) until the day ends",
        reservation.key_pk,
        len(SETTLE_RETRY_SECONDS) + 1,
        sum(SETTLE_RETRY_SECONDS),
        "" if reservation.known else "up to ",
        _usd(reservation.pico),
        _usd(pico),
        reservation.day_key,
    )


def _spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task:
    """A task kept referenced until it ends (the loop holds only weak references)."""
    task = asyncio.get_running_loop().create_task(coro)
    _pending.add(task)
    task.add_done_callback(_pending.discard)
    return task


def _usd(pico: int) -> str:
    return f"{(Decimal(pico) / PICO).normalize():f}"


_pending: set[asyncio.Task] = set()


def _log_key(pk: int) -> str:
    return f"{PREFIX}{{{pk}}}:rpm-log"


def _day_key(pk: int, now: float) -> str:
    return f"{PREFIX}{{{pk}}}:spend:{int(now // DAY)}"


def _budget_keys(day: str) -> list[str]:
    """The day's spend, its holds and their shortfalls (one hash slot: the key's {pk})."""
    return [day, f"{day}:holds", f"{day}:short"]


class LocalCounters:
    """One process (the embedded default): a log of request times per key, and per day the
    spend, the holds and their shortfalls, pruned once a minute. ``clock`` is the time the
    windows and days follow."""

    def __init__(self, clock: Clock = time.time):
        self.clock = clock
        self.values: dict[str, int] = {}
        self.holds: dict[str, dict[str, tuple[int, int]]] = {}  # day -> request id -> (held, shortfall)
        self.shortfalls: dict[str, int] = {}
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

    async def reserve(self, asked: Reservation, budget: int) -> tuple[int, int]:
        """As the _RESERVE script: (held, shortfall), held -1 or -2 when refused."""
        day, worst = asked.day_key, asked.pico
        left = budget - self.values.get(day, 0)
        if left <= 0:
            return -1, 0
        held, short = (worst, 0) if worst <= left else (left, worst - left)
        if short and self.shortfalls.get(day, 0) + short > worst:
            return -2, 0
        self.values[day] = self.values.get(day, 0) + held
        self.shortfalls[day] = self.shortfalls.get(day, 0) + short
        self.holds.setdefault(day, {})[asked.id] = (held, short)
        return held, short

    async def settle(self, reservation: Reservation, pico: int) -> bool:
        """As the _SETTLE script (a hold is settled once); always reached."""
        day = reservation.day_key
        hold = self.holds.get(day, {}).pop(reservation.id, None)
        if hold is not None:
            self.values[day] = self.values.get(day, 0) - hold[0] + pico
            self.shortfalls[day] -= hold[1]
        return True

    def _prune(self, now: float) -> None:
        """Once a minute: forget the logs gone quiet and the days gone by."""
        minute = int(now // WINDOW)
        if minute == self._pruned_minute:
            return
        self._pruned_minute = minute
        self.logs = {pk: times for pk, times in self.logs.items() if times and times[-1] > now - WINDOW}
        today = f":spend:{int(now // DAY)}"
        self.values = {k: v for k, v in self.values.items() if k.endswith(today)}
        self.holds = {k: v for k, v in self.holds.items() if k.endswith(today)}
        self.shortfalls = {k: v for k, v in self.shortfalls.items() if k.endswith(today)}


class RedisCounters:
    """Every process: the log, the day's spend, holds and shortfalls of a key share a hash
    slot ({pk})."""

    def __init__(self, url: str, clock: Clock = time.time):
        self.clock = clock
        self.redis = LoopRedis(url, _ADMIT, _RESERVE, _SETTLE)
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

    async def reserve(self, asked: Reservation, budget: int) -> tuple[int, int] | None:
        """As LocalCounters.reserve; None when the breaker did not let the call go (nothing
        held), LOST when it went but no reply came back (held or not)."""
        keys, args = _budget_keys(asked.day_key), [budget, asked.pico, 2 * DAY, asked.id]
        try:
            held, short = await self.redis.call(lambda client, s: s[1](keys=keys, args=args, client=client))
        except RedisUnavailable as exc:
            self._warn(exc)
            return None
        except Exception as exc:  # noqa: BLE001 - counters down: the settings decide
            self._warn(exc)
            return LOST
        return int(held), int(short)

    async def settle(self, reservation: Reservation, pico: int) -> bool:
        """As LocalCounters.settle; False when Redis cannot be reached (or its breaker is open)."""
        keys, args = _budget_keys(reservation.day_key), [reservation.id, pico, 2 * DAY]
        try:
            await self.redis.call(lambda client, s: s[2](keys=keys, args=args, client=client))
        except Exception as exc:  # noqa: BLE001 - tried again (budget_settle); the hold stays meanwhile
            self._warn(exc)
            return False
        return True

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning("API key limits unavailable (Redis), each failing open or closed as set: %s", exc)


def counters_make() -> LocalCounters | RedisCounters:
    return RedisCounters(settings.REDIS_URL) if settings.REDIS_URL else LocalCounters()

"""Per API key: the routes it may use, requests per minute and a daily budget in USD.

Counters are shared by every process through Redis (one round trip per request: a Lua
script counts the minute and reads the day's spend atomically), or kept in this process
when there is no Redis. A key without limits costs nothing here. If Redis is down, the
request is allowed: an outage of the counters must not become an outage of the hub.

Budgets are never overspent by more than one request: before its call a request
reserves its worst-case cost (capped by what is left of the day) in the day's spend,
atomically, and after it the reservation is settled to the real cost (released when
nothing was answered). Concurrent requests see each other's reservations, so together
they pass the budget by at most the one request whose reservation was capped."""

from __future__ import annotations

import asyncio
import logging
import math
import time
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
WARN_EVERY_SECONDS = 30.0
_CHECK = """
local count = 0
if ARGV[1] == '1' then
  count = redis.call('INCR', KEYS[1])
  if count == 1 then redis.call('EXPIRE', KEYS[1], 120) end
end
return {count, redis.call('GET', KEYS[2]) or '0'}
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
    """Count this request against the key's minute and check its day's spend."""
    if key.rpm_limit is None and key.daily_budget_usd is None:
        return
    now = time.time()
    found = await runtime().counters.hit(key.pk, now, count=key.rpm_limit is not None)
    if found is None:  # counters unavailable: allow
        return
    count, spent = found
    if key.rpm_limit is not None and count > key.rpm_limit:
        raise LimitExceeded(
            429,
            "rate_limit_exceeded",
            f"Rate limit of {key.rpm_limit} requests per minute reached for this API key.",
            retry_after=max(1, math.ceil(60 - now % 60)),
        )
    budget = key.daily_budget_usd
    if budget is not None and spent >= budget * PICO:
        raise budget_spent(budget, now)


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
    or when the counters cannot be reached (allowed, like the other limits)."""
    budget = key.daily_budget_usd
    if budget is None:
        return None
    now = time.time()
    day = _day_key(key.pk, now)
    held = await runtime().counters.reserve(day, int(budget * PICO), max(1, math.ceil(worst * PICO)))
    if held is None:
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


def _minute_key(pk: int, now: float) -> str:
    return f"{PREFIX}{{{pk}}}:rpm:{int(now // 60)}"


def _day_key(pk: int, now: float) -> str:
    return f"{PREFIX}{{{pk}}}:spend:{int(now // DAY)}"


class LocalCounters:
    """One process (the embedded default): plain dicts, pruned as windows pass."""

    def __init__(self):
        self.values: dict[str, int] = {}

    async def hit(self, pk: int, now: float, *, count: bool) -> tuple[int, int]:
        minute = _minute_key(pk, now)
        if count:
            if minute not in self.values:
                self._prune(now)
            self.values[minute] = self.values.get(minute, 0) + 1
        return self.values.get(minute, 0), self.values.get(_day_key(pk, now), 0)

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
        live = (f":rpm:{int(now // 60)}", f":spend:{int(now // DAY)}")
        self.values = {k: v for k, v in self.values.items() if k.endswith(live)}


class RedisCounters:
    def __init__(self, url: str):
        self.redis = LoopRedis(url, _CHECK, _RESERVE)
        self._warned_at = 0.0

    async def hit(self, pk: int, now: float, *, count: bool) -> tuple[int, int] | None:
        client, (script, _) = self.redis.get()
        try:
            found, spent = await script(
                keys=[_minute_key(pk, now), _day_key(pk, now)], args=["1" if count else "0"], client=client
            )
        except Exception as exc:  # noqa: BLE001 - counters down: allow the request
            self._warn(exc)
            return None
        return int(found), int(spent)

    async def reserve(self, day: str, budget: int, worst: int) -> int | None:
        client, (_, script) = self.redis.get()
        try:
            return int(await script(keys=[day], args=[budget, worst, 2 * DAY], client=client))
        except Exception as exc:  # noqa: BLE001 - counters down: allow the request
            self._warn(exc)
            return None

    async def adjust(self, day: str, pico: int) -> None:
        client, _ = self.redis.get()
        try:
            async with client.pipeline(transaction=False) as pipe:
                await pipe.incrby(day, pico).expire(day, 2 * DAY).execute()
        except Exception as exc:  # noqa: BLE001
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning("API key limits not enforced, Redis unavailable: %s", exc)


def counters_make() -> LocalCounters | RedisCounters:
    return RedisCounters(settings.REDIS_URL) if settings.REDIS_URL else LocalCounters()

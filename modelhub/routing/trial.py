"""The trial gate: a model whose cooldown has passed takes one request at a time.

Once a model's cooldown has passed (half open) its next request is a trial; without a gate
every request of every worker would be that trial at once. A trial holds a token named
after the model and the deadline that passed: with Redis one ``SET NX PX`` shared by every
process, without Redis a dict in this process. Requests that find the token held skip the
model. A trial whose verdict changed the model's health keeps the token until it expires:
healthy again, the model needs no token; cooling down again, it has a new deadline and so
a new token; and workers that have not yet heard of the verdict still skip it. A trial
without a verdict (the caller's own error, the client gone, a deadline that earlier
attempts had used part of) gives the token back. The token is made, and held by its
request, before it is taken: a request cancelled while Redis sets it still gives it back.
If Redis is down, the request tries the model: an outage of the gate must not become an
outage of the model."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

from django.conf import settings

from ..redis_clients import LoopRedis
from ..runtime import runtime

log = logging.getLogger("modelhub.routing")

PREFIX = "modelhub:trial:"
WARN_EVERY_SECONDS = 30.0
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Trial:
    key: str
    token: str


def trial_key(pk: int, cooldown_until: float) -> str:
    return f"{PREFIX}{pk}:{round(cooldown_until * 1000)}"


class LocalTrials:
    """One process: key -> (token, monotonic expiry)."""

    def __init__(self):
        self.held: dict[str, tuple[str, float]] = {}

    async def take(self, key: str, token: str, seconds: float) -> bool:
        now = time.monotonic()
        self.held = {k: v for k, v in self.held.items() if v[1] > now}
        if key in self.held:
            return False
        self.held[key] = (token, now + seconds)
        return True

    def release(self, trial: Trial) -> None:
        """At once: there is nothing to wait for."""
        if self.held.get(trial.key, ("",))[0] == trial.token:
            del self.held[trial.key]


class RedisTrials:
    """Every process: one key per trial, expiring by itself."""

    def __init__(self, url: str):
        self.redis = LoopRedis(url, _RELEASE)
        self._pending: set[asyncio.Task] = set()
        self._warned_at = 0.0

    async def take(self, key: str, token: str, seconds: float) -> bool:
        expiry_ms = max(1, round(seconds * 1000))
        try:
            return bool(await self.redis.call(lambda client, _: client.set(key, token, nx=True, px=expiry_ms)))
        except Exception as exc:  # noqa: BLE001 - gate down: the request tries the model
            self._warn(exc)
            return True

    def release(self, trial: Trial) -> asyncio.Task:
        """From sync code too (a stream's end): the delete runs as a task on this loop,
        returned so that a caller whose loop may end soon (asyncio.run) can await it."""
        task = asyncio.get_running_loop().create_task(self._release(trial))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _release(self, trial: Trial) -> None:
        try:
            await self.redis.call(lambda client, s: s[0](keys=[trial.key], args=[trial.token], client=client))
        except Exception as exc:  # noqa: BLE001 - the key expires by itself
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning("trial gate unavailable, half-open models take every request: %s", exc)


TrialGate = LocalTrials | RedisTrials


def trial_gate_make() -> TrialGate:
    return RedisTrials(settings.REDIS_URL) if settings.REDIS_URL else LocalTrials()


def trial_new(*, pk: int, cooldown_until: float) -> Trial:
    """A token for the model's trial after the cooldown that ended at ``cooldown_until``,
    not yet taken: its holder keeps it before the take, to give it back if cancelled."""
    return Trial(trial_key(pk, cooldown_until), uuid.uuid4().hex)


async def trial_claim(trial: Trial) -> bool:
    """Take the token; False while another request holds it."""
    return await runtime().trials.take(trial.key, trial.token, settings.MODELHUB["TRIAL_TIMEOUT_SECONDS"])


async def trial_take(*, pk: int, cooldown_until: float) -> Trial | None:
    """The model's trial token for the cooldown that ended at ``cooldown_until``, or None
    while another request holds it."""
    trial = trial_new(pk=pk, cooldown_until=cooldown_until)
    return trial if await trial_claim(trial) else None


def trial_release(trial: Trial) -> asyncio.Task | None:
    """Give the token back if this trial still holds it; with Redis, the delete's task."""
    return runtime().trials.release(trial)

"""The configuration version every worker compares against on each request.

With Redis it is one shared integer (one GET per request, asynchronous); without Redis
(the embedded default: one process) it is a process-local counter. A change anywhere
bumps it; a worker whose snapshot is older reloads before routing."""
from __future__ import annotations

import asyncio
import logging
import time
import weakref

from django.conf import settings

log = logging.getLogger("modelhub.routing")


class LocalVersion:
    def __init__(self):
        self.value = 1

    async def aget(self) -> int:
        return self.value

    def get(self) -> int:
        return self.value

    def bump(self) -> None:
        self.value += 1


class RedisVersion:
    """The shared version in Redis. If Redis is unreachable, routing goes on with the
    last version seen (a stale configuration beats an outage)."""

    def __init__(self, url: str, key: str):
        self.url, self.key = url, key
        self.last = 0
        self._sync = None
        self._async = weakref.WeakKeyDictionary()  # loop -> client: pools are loop-bound
        self._warned_at = 0.0

    def _async_client(self):
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            import redis.asyncio

            client = self._async[loop] = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        return client

    def _sync_client(self):
        if self._sync is None:
            import redis

            self._sync = redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
        return self._sync

    async def aget(self) -> int:
        try:
            raw = await self._async_client().get(self.key)
        except Exception as exc:  # noqa: BLE001 - any Redis failure degrades the same way
            self._warn(exc)
            return self.last
        self.last = int(raw or 0)
        return self.last

    def get(self) -> int:
        try:
            self.last = int(self._sync_client().get(self.key) or 0)
        except Exception as exc:  # noqa: BLE001
            self._warn(exc)
        return self.last

    def bump(self) -> None:
        try:
            self._sync_client().incr(self.key)
        except Exception as exc:  # noqa: BLE001
            log.error("config version bump failed, other workers reload within %ss: %s",
                      settings.MODELHUB["SNAPSHOT_MAX_AGE_SECONDS"], exc)

    def _warn(self, exc):
        now = time.monotonic()
        if now - self._warned_at > 30:
            self._warned_at = now
            log.warning("config version unavailable, routing on the last snapshot: %s", exc)


VersionStore = LocalVersion | RedisVersion


def version_store_make() -> VersionStore:
    if settings.REDIS_URL:
        return RedisVersion(settings.REDIS_URL, settings.MODELHUB["VERSION_KEY"])
    return LocalVersion()


def config_version_bump() -> None:
    from ..runtime import runtime

    runtime().versions.bump()

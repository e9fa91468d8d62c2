"""Async Redis clients per event loop: a client's connection pool is bound to the loop that
made it, and a process may run several loops (the ASGI server's, asyncio.run per Celery
task, async_to_sync). Short timeouts: the callers degrade (allow, route on what they
last saw) rather than wait for a Redis that does not answer.

A breaker in front of each: after a connection failure or a timeout, calls fail at once
(``RedisUnavailable``) for ``RETRY_SECONDS``; then one call, the probe, tries Redis while
the others still fail at once, and its outcome closes the breaker or opens it again. So
while Redis is down or hung, one request a second finds out, instead of every request
paying a timeout. A failure also drops the pool's idle connections: they went to the same
server, and after a restart each would otherwise fail once in turn, each keeping the
breaker open a second longer."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

TIMEOUT_SECONDS = 0.5
RETRY_SECONDS = 1.0

T = TypeVar("T")


class RedisUnavailable(ConnectionError):
    """Redis failed a call less than RETRY_SECONDS ago, or another call is finding out
    whether it is back; it is not tried now."""


class LoopRedis:
    """``call(fn)``: ``fn(client, scripts)`` with this loop's client and its registered Lua
    scripts, made on first use, behind the breaker."""

    def __init__(self, url: str, *scripts: str):
        self.url, self.scripts = url, scripts
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, tuple[Any, ...]]] = (
            weakref.WeakKeyDictionary()
        )
        self._down_until = 0.0  # monotonic; 0: closed (Redis answered last)
        self._probing = False

    async def call(self, fn: Callable[[Any, tuple[Any, ...]], Awaitable[T]]) -> T:
        probe = self._admit()
        try:
            return await self._run(fn)
        finally:
            if probe:
                self._probing = False

    async def _run(self, fn: Callable[[Any, tuple[Any, ...]], Awaitable[T]]) -> T:
        client, scripts = self._client()
        try:
            result = await fn(client, scripts)
        except Exception as exc:
            if _is_outage(exc):
                self._down_until = time.monotonic() + RETRY_SECONDS
                await _idle_connections_drop(client)
            raise
        self._down_until = 0.0
        return result

    def _admit(self) -> bool:
        """Whether this call is the probe; raises RedisUnavailable while the breaker is open."""
        if not self._down_until:
            return False
        if self._probing or time.monotonic() < self._down_until:
            raise RedisUnavailable(f"Redis failed less than {RETRY_SECONDS:g}s ago")
        self._probing = True
        return True

    def _client(self) -> tuple[Any, tuple[Any, ...]]:
        loop = asyncio.get_running_loop()
        found = self._by_loop.get(loop)
        if found is None:
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
            )
            found = self._by_loop[loop] = (client, tuple(client.register_script(s) for s in self.scripts))
        return found


def _is_outage(exc: Exception) -> bool:
    """Redis cannot be reached or did not answer in time (not: a command it refused)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError))  # OSError: TimeoutError too


async def _idle_connections_drop(client: Any) -> None:
    from redis.exceptions import RedisError

    try:
        await client.connection_pool.disconnect(inuse_connections=False)
    except (RedisError, OSError):
        pass  # closing sockets to a dead server: nothing more to do

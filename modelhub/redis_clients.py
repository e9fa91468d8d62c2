"""Async Redis clients per event loop: a client's connection pool is bound to the loop that
made it, and a process may run several loops (the ASGI server's, asyncio.run per Celery
task, async_to_sync). Short timeouts: the callers degrade (allow, route on what they
last saw) rather than wait for a Redis that does not answer."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any


class LoopRedis:
    """``get()``: this loop's client and its registered Lua scripts, made on first use."""

    def __init__(self, url: str, *scripts: str):
        self.url, self.scripts = url, scripts
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, tuple[Any, ...]]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> tuple[Any, tuple[Any, ...]]:
        loop = asyncio.get_running_loop()
        found = self._by_loop.get(loop)
        if found is None:
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
            found = self._by_loop[loop] = (client, tuple(client.register_script(s) for s in self.scripts))
        return found

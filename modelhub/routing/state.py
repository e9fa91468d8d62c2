"""This worker's routing state: the configuration snapshot and the health board.

Each request learns both shared versions at once. The config version moving rebuilds the
snapshot (health included); the health version alone moving reloads only the health rows
into the board, so a failure storm costs one small query per worker, not a rebuild."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref

from asgiref.sync import sync_to_async
from django.db import DatabaseError

from ..dbwork import fresh_connections
from .health import Health, HealthBoard
from .snapshot import Snapshot, health_load, snapshot_build
from .version import Versions, VersionStore

log = logging.getLogger("modelhub.routing")

# After a failed reload the previous snapshot stands this long: a database outage costs one
# attempt (and one log line) a second per worker, not one per request.
RELOAD_RETRY_SECONDS = 1.0


class RoutingState:
    def __init__(self, versions: VersionStore):
        self.versions = versions
        self.snapshot: Snapshot | None = None
        self.board = HealthBoard()
        self.health_version: int | None = None  # the health version the board has merged
        self._retry_at = 0.0  # monotonic: no reload before this, after a failed one
        self._running: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> the reload task

    async def current(self) -> Snapshot:
        """The snapshot for this request: one versions read, a reload only after a change."""
        seen = await self.versions.aget()
        if self._up_to(seen):
            return self._installed()
        await self._refresh(seen)
        return self._installed()

    async def _refresh(self, seen: Versions) -> None:
        """Bring this worker up to ``seen``: one reload at a time per event loop, and the
        requests that arrive while one runs wait for it together, then check again. The
        running reload's error is every waiter's, and after a failed reload the waiters route
        on what this worker has until the retry.

        Not a lock: an asyncio.Lock hands itself on to one waiter a loop turn, so after a
        reload a burst of requests left it one by one, while the streams already past it were
        relayed in between: 1,000 requests that met the 30-second refresh took 5 s to reach
        their upstream instead of 1."""
        loop = asyncio.get_running_loop()
        # A reload that has ended but whose done callback has not run yet (it runs a loop turn
        # later) is no longer running: waiting on it would not yield, and would never end.
        while (running := self._running.get(loop)) is not None and not running.done():
            await asyncio.shield(running)  # its failure is everyone's
        if time.monotonic() < self._retry_at:
            return  # the reload just failed: route on what this worker has until the retry
        if self._needs_build(seen):
            work = self._reload(seen)
        elif seen.health != self.health_version:
            work = self._reload_health(seen.health)
        else:
            return
        task = self._running[loop] = loop.create_task(work)
        task.add_done_callback(functools.partial(self._reload_ended, loop))
        await asyncio.shield(task)

    def _reload_ended(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task) -> None:
        if self._running.get(loop) is task:
            del self._running[loop]
        if not task.cancelled():
            task.exception()  # read: a failure whose waiters have all gone is not logged as unretrieved

    def current_sync(self) -> Snapshot:
        """For management commands and Celery tasks, which run outside an event loop."""
        seen = self.versions.get()
        if self._needs_build(seen):
            self._install(snapshot_build(version=seen.config), health_version=seen.health)
        elif seen.health != self.health_version:
            self._merge_health(health_load(), health_version=seen.health)
        return self._installed()

    def _installed(self) -> Snapshot:
        if self.snapshot is None:  # never after a build, which a missing snapshot forces
            raise RuntimeError("no routing snapshot has been built")
        return self.snapshot

    def _up_to(self, seen: Versions) -> bool:
        if time.monotonic() < self._retry_at:
            return True
        return not self._needs_build(seen) and seen.health == self.health_version

    def _needs_build(self, seen: Versions) -> bool:
        return self.snapshot is None or self.snapshot.stale(seen.config, time.time())

    async def _reload(self, seen: Versions) -> None:
        try:
            snapshot = await sync_to_async(fresh_connections(snapshot_build))(version=seen.config)
        except DatabaseError as exc:
            if self.snapshot is None:
                raise
            self._reload_failed("configuration", exc)
            return
        self._install(snapshot, health_version=seen.health)

    async def _reload_health(self, version: int) -> None:
        try:
            shared = await sync_to_async(fresh_connections(health_load))()
        except DatabaseError as exc:
            self._reload_failed("health", exc)
            return
        self._merge_health(shared, health_version=version)

    def _reload_failed(self, what: str, exc: DatabaseError) -> None:
        """Route on what this worker has (the previous snapshot, its own health board)."""
        self._retry_at = time.monotonic() + RELOAD_RETRY_SECONDS
        log.warning(
            "%s reload failed, routing on what this worker has; next try in %gs: %s", what, RELOAD_RETRY_SECONDS, exc
        )

    def _install(self, snapshot: Snapshot, *, health_version: int) -> None:
        self._merge_health(snapshot.health, health_version=health_version)
        self.snapshot = snapshot

    def _merge_health(self, shared: dict[int, Health], *, health_version: int) -> None:
        # Tagged with the version read before the query: the rows are at least that new.
        self.board.merge(shared)
        self.health_version = health_version

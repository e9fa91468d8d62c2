"""This worker's routing state: the configuration snapshot and the health board."""
from __future__ import annotations

import asyncio
import logging
import time
import weakref

from asgiref.sync import sync_to_async
from django.db import DatabaseError

from .health import HealthBoard
from .snapshot import Snapshot, snapshot_build
from .version import VersionStore

log = logging.getLogger("modelhub.routing")


class RoutingState:
    def __init__(self, versions: VersionStore):
        self.versions = versions
        self.snapshot: Snapshot | None = None
        self.board = HealthBoard()
        self._locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    async def current(self) -> Snapshot:
        """The snapshot for this request: one version read, a reload only after a change."""
        version = await self.versions.aget()
        snapshot = self.snapshot
        if snapshot is not None and not snapshot.stale(version, time.time()):
            return snapshot
        async with self._lock():
            snapshot = self.snapshot
            if snapshot is None or snapshot.stale(version, time.time()):
                snapshot = await self._reload(version)
        return snapshot

    async def _reload(self, version: int) -> Snapshot:
        try:
            return self._install(await sync_to_async(snapshot_build)(version=version))
        except DatabaseError:
            if self.snapshot is None:
                raise
            log.exception("configuration reload failed; routing on the previous snapshot")
            return self.snapshot

    def current_sync(self) -> Snapshot:
        """For management commands and Celery tasks, which run outside an event loop."""
        version = self.versions.get()
        snapshot = self.snapshot
        if snapshot is None or snapshot.stale(version, time.time()):
            snapshot = self._install(snapshot_build(version=version))
        return snapshot

    def _install(self, snapshot: Snapshot) -> Snapshot:
        self.board.merge(snapshot.health)
        self.snapshot = snapshot
        return snapshot

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

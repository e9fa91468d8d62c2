"""The versions every worker compares against on each request: one for the configuration,
one for health.

A configuration change bumps the config version and every worker rebuilds its snapshot; a
health change (a cooldown, a recovery, a reset) bumps only the health version and every
worker reloads only the health rows. With Redis both are shared integers, learned in one
MGET per request (concurrent requests share one that began after they arrived:
``SharedReads``). Without Redis they live in one small file that every process on the
machine can stat: one ``os.stat`` per request, the file itself read only after a bump."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from ..redis_clients import LoopRedis

log = logging.getLogger("modelhub.routing")

HEALTH_VERSION_KEY = "modelhub:health-version"
WARN_EVERY_SECONDS = 30


@dataclass(frozen=True, slots=True)
class Versions:
    config: int = 0
    health: int = 0


class SharedReads:
    """Concurrent readers of one value on one event loop share its reads, and each is served
    by a read that began after it asked: a request still sees every change committed before
    it arrived, while a burst of a thousand requests makes a few reads instead of a thousand
    (each a Redis round trip and, at once, a connection of its own)."""

    def __init__(self, read: Callable[[], Any]):
        self._read = read
        self._waiting: asyncio.Future | None = None  # for the readers that asked since the last read began
        self._task: asyncio.Task | None = None

    async def get(self):
        if self._waiting is None:
            self._waiting = asyncio.get_running_loop().create_future()
            self._waiting.add_done_callback(_retrieved)
        if self._task is None:
            self._task = asyncio.ensure_future(self._reads())
        return await asyncio.shield(self._waiting)  # a reader that gives up leaves the read to the others

    async def _reads(self) -> None:
        try:
            while (waiting := self._waiting) is not None:
                self._waiting = None
                try:
                    waiting.set_result(await self._read())
                except asyncio.CancelledError:
                    waiting.cancel()
                    raise
                except Exception as exc:  # noqa: BLE001 - every reader of this read gets it
                    waiting.set_exception(exc)
        finally:
            self._task = None
            if self._waiting is not None:  # cancelled (the loop is closing): no read will serve them
                self._waiting.cancel()
                self._waiting = None


def _retrieved(future: asyncio.Future) -> None:
    """A read's failure is handed to its readers; if they all left, nobody needs telling."""
    if not future.cancelled():
        future.exception()


class RedisVersion:
    """Both versions in Redis. If Redis is unreachable, routing goes on with the last
    versions seen (a stale configuration beats an outage). Concurrent requests share their
    reads (``SharedReads``)."""

    def __init__(self, url: str, *, config_key: str, health_key: str):
        self.url, self.keys = url, (config_key, health_key)
        self.last = Versions()
        self._sync: Any = None
        self.redis = LoopRedis(url)
        self._warned_at = 0.0
        self._reads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedReads] = weakref.WeakKeyDictionary()

    def _sync_client(self):
        if self._sync is None:
            import redis

            self._sync = redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
        return self._sync

    async def aget(self) -> Versions:
        loop = asyncio.get_running_loop()
        reads = self._reads.get(loop)
        if reads is None:
            reads = self._reads[loop] = SharedReads(lambda: self.redis.call(lambda client, _: client.mget(self.keys)))
        try:
            config, health = await reads.get()
        except Exception as exc:  # noqa: BLE001 - any Redis failure degrades the same way
            self._warned_at = _warn_rarely(self._warned_at, exc)
            return self.last
        self.last = Versions(int(config or 0), int(health or 0))
        return self.last

    def get(self) -> Versions:
        try:
            config, health = self._sync_client().mget(self.keys)
            self.last = Versions(int(config or 0), int(health or 0))
        except Exception as exc:  # noqa: BLE001
            self._warned_at = _warn_rarely(self._warned_at, exc)
        return self.last

    def bump_config(self) -> None:
        self._incr(self.keys[0])

    def bump_health(self) -> None:
        self._incr(self.keys[1])

    def _incr(self, key: str) -> None:
        try:
            self._sync_client().incr(key)
        except Exception as exc:  # noqa: BLE001
            _bump_failed(key, exc)


class FileVersion:
    """Both versions in one file ("<config> <health>"), rewritten whole by each bump.

    A reader compares the file's (mtime_ns, size, inode) with what it saw last and reads it
    only when that changed. A bump holds a lock beside the file and stamps the new file
    with an mtime past the previous one: two bumps within one clock tick still look
    different to a reader, and no bump is lost when two processes bump at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.last = Versions()
        self._stamp: tuple[int, int, int] | None = None
        self._warned_at = 0.0

    async def aget(self) -> Versions:
        return self.get()  # a stat takes microseconds: not worth a thread hop

    def get(self) -> Versions:
        try:
            if _stamp(os.stat(self.path)) != self._stamp:
                self._stamp, self.last = _versions_read(self.path)
        except FileNotFoundError:
            pass  # nothing bumped yet
        except (OSError, ValueError) as exc:
            self._warned_at = _warn_rarely(self._warned_at, exc)
        return self.last

    def bump_config(self) -> None:
        self._bump(config=1)

    def bump_health(self) -> None:
        self._bump(health=1)

    def _bump(self, *, config: int = 0, health: int = 0) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _locked(self.path.with_name(self.path.name + ".lock")):
                _versions_write(self.path, config=config, health=health)
        except OSError as exc:
            _bump_failed(str(self.path), exc)


VersionStore = RedisVersion | FileVersion


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def _versions_read(path: Path) -> tuple[tuple[int, int, int], Versions]:
    """The file's stamp and content, taken from one open file (a bump replaces the file)."""
    with open(path, "rb") as handle:
        stamp = _stamp(os.fstat(handle.fileno()))
        config, health = (int(part) for part in handle.read().split())
    return stamp, Versions(config, health)


def _versions_write(path: Path, *, config: int, health: int) -> None:
    """Add to the versions in the file; the caller holds the lock."""
    try:
        stamp, current = _versions_read(path)
    except (FileNotFoundError, ValueError):
        stamp, current = (0, 0, 0), Versions()
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(f"{current.config + config} {current.health + health}\n")
    mtime_ns = max(time.time_ns(), stamp[0] + 1)
    os.utime(temporary, ns=(mtime_ns, mtime_ns))
    os.replace(temporary, path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _warn_rarely(warned_at: float, exc: Exception) -> float:
    now = time.monotonic()
    if now - warned_at <= WARN_EVERY_SECONDS:
        return warned_at
    log.warning("routing versions unavailable, routing on the last ones seen: %s", exc)
    return now


def _bump_failed(where: str, exc: Exception) -> None:
    log.error(
        "version bump in %s failed, other workers reload within %ss: %s",
        where,
        settings.MODELHUB["SNAPSHOT_MAX_AGE_SECONDS"],
        exc,
    )


def version_file_path() -> Path:
    configured = settings.MODELHUB.get("VERSION_FILE")
    if configured:
        return Path(configured)
    return version_file_default(database=settings.DATABASES["default"])


def version_file_default(*, database: dict) -> Path:
    """Beside a SQLite database file; for any other database, in the temporary directory
    under a name drawn from the database's identity, the same in every process using it."""
    name = str(database.get("NAME") or "")
    if database["ENGINE"].endswith("sqlite3") and _is_plain_file(name):
        return Path(f"{name}.modelhub-version")
    identity = f"{database['ENGINE']}|{database.get('HOST')}|{database.get('PORT')}|{name}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"modelhub-{digest}.version"


def _is_plain_file(name: str) -> bool:
    """Not ":memory:" and not a "file:" URI (Django's in-memory test database is one)."""
    return name not in ("", ":memory:") and not name.startswith("file:")


def version_store_make() -> VersionStore:
    hub = settings.MODELHUB
    if settings.REDIS_URL:
        return RedisVersion(
            settings.REDIS_URL,
            config_key=hub["VERSION_KEY"],
            health_key=hub.get("HEALTH_VERSION_KEY", HEALTH_VERSION_KEY),
        )
    return FileVersion(version_file_path())


def config_version_bump() -> None:
    from ..runtime import runtime

    runtime().versions.bump_config()


def health_version_bump() -> None:
    from ..runtime import runtime

    runtime().versions.bump_health()


def version_bump_on_commit(bump: Callable[[], None]) -> None:
    """Bump now, so that this connection's next read sees the change, and inside a
    transaction again after commit, so that no worker keeps what it read before."""
    bump()
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(bump)

"""The process's rollout work: each step's counts (shared through Redis, or this process's
in the embedded default) and the queue of work that requests leave behind (counting and
judging a canary request, dispatching a shadow copy), done off the request."""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connections

from ..runtime import runtime

log = logging.getLogger("modelhub.rollouts")

COUNTS_PREFIX = "modelhub:rollout-counts:"
COUNTS_TTL_SECONDS = 30 * 86_400
MAX_QUEUED = 10_000  # work waiting in a process; past it, shadow copies and counts are dropped
WARN_EVERY_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Counts:
    requests: int = 0
    failures: int = 0


class LocalCounts:
    """Each step's counts in this process (the embedded default runs one)."""

    def __init__(self):
        self._counts: dict[str, Counts] = {}
        self._lock = threading.Lock()

    def add(self, name: str, failed: bool) -> Counts:
        with self._lock:
            old = self._counts.get(name, Counts())
            counts = self._counts[name] = Counts(old.requests + 1, old.failures + failed)
        return counts

    def read(self, name: str) -> Counts:
        return self._counts.get(name, Counts())


class RedisCounts:
    """Each step's counts in Redis, shared by every process: one hash per step."""

    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)

    def add(self, name: str, failed: bool) -> Counts:
        key = COUNTS_PREFIX + name
        with self.client.pipeline() as pipe:
            pipe.hincrby(key, "requests", 1)
            pipe.hincrby(key, "failures", int(failed))
            pipe.expire(key, COUNTS_TTL_SECONDS)
            requests, failures, _ = pipe.execute()
        return Counts(requests, failures)

    def read(self, name: str) -> Counts:
        requests, failures = self.client.hmget(COUNTS_PREFIX + name, "requests", "failures")
        return Counts(int(requests or 0), int(failures or 0))


class RolloutWork:
    """Work queued by requests (counting, judging, dispatching shadow copies), done by one
    background thread, or by ``run_pending`` where ``ROLLOUT_BACKGROUND`` is off (tests, which
    run it inside their transaction). Each job runs in the context of the request that left
    it (its request id: on the job's log lines and on the Celery task it starts). Full, it
    drops work: a shadow copy is a sample. Failures (Redis or the database away) are logged
    once every ``WARN_EVERY_SECONDS``."""

    def __init__(self):
        self.counts = RedisCounts(settings.REDIS_URL) if settings.REDIS_URL else LocalCounts()
        self.jobs: queue.Queue[tuple[contextvars.Context, Callable[[], object]]] = queue.Queue(MAX_QUEUED)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._warned_at = -WARN_EVERY_SECONDS

    def submit(self, job: Callable[[], object]) -> None:
        try:
            self.jobs.put_nowait((contextvars.copy_context(), job))
        except queue.Full:
            self._warn("rollout work dropped: %d jobs queued already", MAX_QUEUED)
            return
        if self._thread is None and settings.MODELHUB.get("ROLLOUT_BACKGROUND", True):
            self._start()

    def run_pending(self) -> int:
        """Do the queued work in this thread; returns how many jobs ran."""
        done = 0
        while True:
            try:
                context, job = self.jobs.get_nowait()
            except queue.Empty:
                return done
            self._do(context, job)
            done += 1

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="modelhub-rollouts", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._do(*self.jobs.get())
            if self.jobs.empty():
                connections.close_all()  # this thread's own: idle, it holds none open

    def _do(self, context: contextvars.Context, job: Callable[[], object]) -> None:
        try:
            context.run(job)
        except Exception:  # noqa: BLE001 - work of a request already answered: logged, never raised
            self._warn("rollout work failed", exc_info=True)

    def _warn(self, message: str, *args, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(message, *args, exc_info=exc_info)


_work: tuple[object, RolloutWork] | None = None
_work_lock = threading.Lock()


def rollout_work() -> RolloutWork:
    """This process's rollout work, made anew with the runtime (``runtime_reset``)."""
    global _work
    current, held = runtime(), _work
    if held is not None and held[0] is current:
        return held[1]
    with _work_lock:
        if _work is None or _work[0] is not current:
            _work = (current, RolloutWork())
        return _work[1]

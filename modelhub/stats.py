"""Live statistics per model, over a rolling window shared by every process: requests,
successes, success rate, p50 and p95 latency, p50 time to first token of streams, cost per
request. The strategies ("cost", "latency", the class budgets), the rollouts, admin and the
admin API read them.

Written off the hot path: the ledger's background writer hands each batch of usage rows to
``LiveStats.feed`` (one Redis pipeline per batch; ``Ledger.flush`` does the same when the
ledger writes synchronously). The figures are kept per model and per minute: with Redis
(``REDIS_URL``) shared by every process, otherwise in this process (the embedded default
runs one). The window is ``STATS_WINDOW_SECONDS`` rounded up to whole minutes: the current
minute and the ones before it.

What counts: every attempt that reached a provider is one request of its model, and a
success when it answered (outcome "ok"); an attempt that failed is a request that failed.
Probes do not count (they are the hub's own calls, made on a schedule whatever the
traffic), nor do attempts whose client went away (the model was not at fault, and their
latency is the client's). Latency percentiles are over successful attempts (a failure's
latency would make a broken model look fast), time to first token over successful streams.
Shadow copies count: they are real calls of the candidate, which its rollout judges. Cost
per request is the window's cost (summed exactly, in pico-dollars) over its requests.

Percentiles are exact over the samples kept: the samples themselves, not a histogram. Each
model keeps the newest ``SAMPLES_PER_MINUTE`` latencies (and as many times to first token)
of each minute; past that many answers a minute the percentiles are of those newest
samples, each minute weighing at most that much, while the counts and the cost stay exact.

Read side: ``stats_read`` (sync: admin, admin API) reads the store, and
``runtime().stats.latest(key)`` (the router) is a dictionary lookup of the last figures,
refreshed in a background thread that a call starts at most every
``STATS_REFRESH_SECONDS``. A store that cannot be read keeps the last figures; one that
cannot be written loses that batch's figures (never the ledger's rows)."""

from __future__ import annotations

import logging
import math
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings

log = logging.getLogger("modelhub.stats")

PREFIX = "modelhub:stats:"
MINUTE = 60
SAMPLES_PER_MINUTE = 512
PICO = Decimal(10) ** 12  # cost is summed in pico-dollars: integers, exact at the ledger's precision
FEED_RETRY_SECONDS = 5.0  # after a failed write, batches are dropped this long instead of each waiting
TIMEOUT_SECONDS = 0.5
SAMPLE_BYTES = 4  # a sample in Redis: milliseconds as a little-endian unsigned 32-bit integer
MAX_SAMPLE = 2**32 - 1
# Append packed samples to a string; once it holds twice the samples kept, cut it to them.
# KEYS: the samples. ARGV: the packed samples, the bytes kept, the key's time to live.
_SAMPLES_APPEND = """
local size = redis.call('APPEND', KEYS[1], ARGV[1])
local keep = tonumber(ARGV[2])
if size >= 2 * keep then
  redis.call('SET', KEYS[1], redis.call('GETRANGE', KEYS[1], -keep, -1))
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return size
"""
OK = "ok"
NOT_COUNTED = frozenset({"client_disconnected", "skipped"})
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class ModelStats:
    """One model over the window. Latencies in ms; None where there is nothing to measure."""

    requests: int
    successes: int
    success_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    ttft_p50_ms: float | None
    cost_per_request: Decimal | None


NO_REQUESTS = ModelStats(0, 0, None, None, None, None, None)


def stats_key(provider: str, model_id: str) -> str:
    """How the statistics name a model: "provider/model_id" (a usage row's provider and model)."""
    return f"{provider}/{model_id}"


def percentile(ordered: Sequence[int], percent: int) -> float | None:
    """Linear interpolation between the closest ranks of sorted samples (numpy's default,
    ``statistics.quantiles(method="inclusive")``), in integer arithmetic until the one division."""
    if not ordered:
        return None
    last = len(ordered) - 1
    rank, part = divmod(percent * last, 100)
    return (ordered[rank] * (100 - part) + ordered[min(rank + 1, last)] * part) / 100


# --- one minute of one model ---------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """One model's attempts within one minute."""

    requests: int = 0
    successes: int = 0
    cost_pico: int = 0
    latencies: list[int] = field(default_factory=list)  # ms, oldest first
    ttfts: list[int] = field(default_factory=list)


def tallies_of(records: Iterable[Any]) -> dict[tuple[int, str], Tally]:
    """The counted usage rows (UsageRecord) grouped by (minute, model key)."""
    tallies: dict[tuple[int, str], Tally] = {}
    for record in records:
        if record.is_probe or record.outcome in NOT_COUNTED:
            continue
        slot = (int(record.created_at.timestamp() // MINUTE), stats_key(record.provider, record.model))
        tally = tallies.get(slot)
        if tally is None:
            tally = tallies[slot] = Tally()
        tally.requests += 1
        tally.cost_pico += int((Decimal(record.cost_usd) * PICO).to_integral_value())
        if record.outcome == OK:
            tally.successes += 1
            tally.latencies.append(record.latency_ms)
            if record.stream and record.ttft_ms is not None:
                tally.ttfts.append(record.ttft_ms)
    return tallies


def figures_of(tallies: Iterable[Tally]) -> ModelStats:
    """The window's figures from its minutes."""
    requests = successes = cost = 0
    latencies: list[int] = []
    ttfts: list[int] = []
    for tally in tallies:
        requests, successes, cost = requests + tally.requests, successes + tally.successes, cost + tally.cost_pico
        latencies += tally.latencies
        ttfts += tally.ttfts
    if not requests:
        return NO_REQUESTS
    latencies.sort()
    ttfts.sort()
    return ModelStats(
        requests=requests,
        successes=successes,
        success_rate=successes / requests,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        ttft_p50_ms=percentile(ttfts, 50),
        cost_per_request=Decimal(cost).scaleb(-12) / requests,
    )


def minutes_of(now: float, window_seconds: float) -> range:
    """The minutes of the window ending now: the current one and those before it."""
    current = int(now // MINUTE)
    return range(current - max(1, math.ceil(window_seconds / MINUTE)) + 1, current + 1)


# --- stores --------------------------------------------------------------------------


class Store(Protocol):
    clock: Clock
    window_seconds: float

    def add(self, tallies: dict[tuple[int, str], Tally]) -> None: ...

    def read(self, keys: Iterable[str] | None = None) -> dict[str, ModelStats]: ...


class LocalStatsStore:
    """This process's minutes (the embedded default); the writer thread adds, others read."""

    def __init__(self, *, clock: Clock = time.time, window_seconds: float = 900.0):
        self.clock, self.window_seconds = clock, window_seconds
        self._minutes: dict[int, dict[str, Tally]] = {}
        self._lock = threading.Lock()

    def add(self, tallies: dict[tuple[int, str], Tally]) -> None:
        window = minutes_of(self.clock(), self.window_seconds)
        with self._lock:
            self._minutes = {m: models for m, models in self._minutes.items() if m in window}
            for (minute, key), tally in tallies.items():
                if minute in window:
                    _tally_merge(self._minutes.setdefault(minute, {}).setdefault(key, Tally()), tally)

    def read(self, keys: Iterable[str] | None = None) -> dict[str, ModelStats]:
        window = minutes_of(self.clock(), self.window_seconds)
        wanted = None if keys is None else set(keys)
        by_model: dict[str, list[Tally]] = {}
        with self._lock:
            for minute, models in self._minutes.items():
                if minute not in window:
                    continue
                for key, tally in models.items():
                    if wanted is None or key in wanted:
                        by_model.setdefault(key, []).append(_tally_copy(tally))
        return {key: figures_of(tallies) for key, tallies in by_model.items()}


def _tally_merge(into: Tally, tally: Tally) -> None:
    into.requests += tally.requests
    into.successes += tally.successes
    into.cost_pico += tally.cost_pico
    into.latencies = (into.latencies + tally.latencies)[-SAMPLES_PER_MINUTE:]
    into.ttfts = (into.ttfts + tally.ttfts)[-SAMPLES_PER_MINUTE:]


def _tally_copy(tally: Tally) -> Tally:
    return Tally(tally.requests, tally.successes, tally.cost_pico, list(tally.latencies), list(tally.ttfts))


class RedisStatsStore:
    """Every process's minutes in Redis. Per minute: a set of the models seen; per model and
    minute: a hash of counts (requests, successes, cost in pico-dollars) and two strings of
    samples (4-byte integers, newest last), whose newest ``SAMPLES_PER_MINUTE`` are read.
    Packed rather than a list: a refresh reads one string per minute instead of parsing
    every sample as a reply (20 models, 15 full minutes: 22 ms to read, 243 ms as lists).
    Each key expires a minute after it leaves the window."""

    def __init__(
        self, url: str, *, clock: Clock = time.time, window_seconds: float = 900.0, timeout: float = TIMEOUT_SECONDS
    ):
        import redis

        self.clock, self.window_seconds = clock, window_seconds
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._samples_append = self.client.register_script(_SAMPLES_APPEND)

    @property
    def _ttl(self) -> int:
        return math.ceil(self.window_seconds) + 2 * MINUTE

    def add(self, tallies: dict[tuple[int, str], Tally]) -> None:
        """One pipeline for the whole batch."""
        window = minutes_of(self.clock(), self.window_seconds)
        with self.client.pipeline(transaction=False) as pipe:
            for (minute, key), tally in tallies.items():
                if minute in window:
                    self._add_one(pipe, minute, key, tally)
            pipe.execute()

    def _add_one(self, pipe, minute: int, key: str, tally: Tally) -> None:
        counts, latencies, ttfts = _keys(minute, key)
        pipe.sadd(_models_key(minute), key).expire(_models_key(minute), self._ttl)
        pipe.hincrby(counts, "requests", tally.requests).hincrby(counts, "successes", tally.successes)
        pipe.hincrby(counts, "cost_pico", tally.cost_pico).expire(counts, self._ttl)
        for name, samples in ((latencies, tally.latencies), (ttfts, tally.ttfts)):
            if samples:
                args: list[bytes | int] = [
                    _packed(samples[-SAMPLES_PER_MINUTE:]),
                    SAMPLE_BYTES * SAMPLES_PER_MINUTE,
                    self._ttl,
                ]
                self._samples_append(keys=[name], args=args, client=pipe)

    def read(self, keys: Iterable[str] | None = None) -> dict[str, ModelStats]:
        """Two round trips: the models of each minute, then their counts and samples."""
        wanted = None if keys is None else set(keys)
        slots = [slot for slot in self._slots() if wanted is None or slot[1] in wanted]
        with self.client.pipeline(transaction=False) as pipe:
            for minute, key in slots:
                counts, latencies, ttfts = _keys(minute, key)
                pipe.hmget(counts, "requests", "successes", "cost_pico")
                pipe.getrange(latencies, -SAMPLE_BYTES * SAMPLES_PER_MINUTE, -1)
                pipe.getrange(ttfts, -SAMPLE_BYTES * SAMPLES_PER_MINUTE, -1)
            replies = pipe.execute()
        by_model: dict[str, list[Tally]] = {}
        for i, (_, key) in enumerate(slots):
            (requests, successes, cost), latencies, ttfts = replies[3 * i : 3 * i + 3]
            tally = Tally(
                int(requests or 0), int(successes or 0), int(cost or 0), _unpacked(latencies), _unpacked(ttfts)
            )
            by_model.setdefault(key, []).append(tally)
        return {key: figures_of(tallies) for key, tallies in by_model.items()}

    def _slots(self) -> list[tuple[int, str]]:
        """(minute, model key) of every model seen in each minute of the window."""
        window = minutes_of(self.clock(), self.window_seconds)
        with self.client.pipeline(transaction=False) as pipe:
            for minute in window:
                pipe.smembers(_models_key(minute))
            members = pipe.execute()
        return [(minute, key.decode()) for minute, found in zip(window, members, strict=True) for key in found]


def _packed(samples: list[int]) -> bytes:
    return struct.pack(f"<{len(samples)}I", *(min(max(0, v), MAX_SAMPLE) for v in samples))


def _unpacked(data: bytes) -> list[int]:
    whole = len(data) - len(data) % SAMPLE_BYTES  # whole samples only, should a string ever be cut
    return list(struct.unpack(f"<{whole // SAMPLE_BYTES}I", data[:whole]))


def _models_key(minute: int) -> str:
    return f"{PREFIX}{minute}:models"


def _keys(minute: int, key: str) -> tuple[str, str, str]:
    base = f"{PREFIX}{minute}:{key}"
    return f"{base}:counts", f"{base}:latency", f"{base}:ttft"


# --- what the processes hold ---------------------------------------------------------


class LiveStats:
    """The process's way to the store: ``feed`` from the ledger's writer, ``read`` for
    admin, ``latest`` for the router (the last figures read, refreshed in the background)."""

    def __init__(self, store: Store, *, refresh_seconds: float = 5.0):
        self.store, self.refresh_seconds = store, refresh_seconds
        self.table: dict[str, ModelStats] = {}
        self._due = 0.0  # monotonic: when latest() next starts a refresh
        self._refreshing = threading.Lock()  # held by the refresh in flight
        self._feed_down_until = 0.0
        self._feed_failing = self._read_failing = False

    def feed(self, records: Iterable[Any]) -> None:
        """Add a batch of usage rows. Never raises: while the store fails, batches are
        dropped (logged once) and the store is tried again every ``FEED_RETRY_SECONDS``."""
        tallies = tallies_of(records)
        if not tallies or time.monotonic() < self._feed_down_until:
            return
        try:
            self.store.add(tallies)
        except Exception as exc:  # noqa: BLE001 - statistics are not worth failing the ledger for
            self._feed_down_until = time.monotonic() + FEED_RETRY_SECONDS
            if not self._feed_failing:
                log.warning("live statistics not written (Redis); batches dropped until it answers: %s", exc)
            self._feed_failing = True
            return
        if self._feed_failing:
            log.warning("live statistics written again")
        self._feed_failing = False

    def read(self, keys: Iterable[str] | None = None) -> dict[str, ModelStats]:
        """The figures of ``keys`` (None: every model with requests in the window) from the
        store; while it cannot be read, the last figures this process read (logged once)."""
        keys = None if keys is None else list(keys)
        try:
            found = self.store.read(keys)
        except Exception as exc:  # noqa: BLE001 - an outage of the statistics keeps the last figures
            if not self._read_failing:
                log.warning("live statistics unreadable (Redis); the last figures are kept: %s", exc)
            self._read_failing = True
            table = self.table
            return dict(table) if keys is None else {k: table[k] for k in keys if k in table}
        if self._read_failing:
            log.warning("live statistics readable again")
        self._read_failing = False
        if keys is None:
            self.table = found
        return found

    def latest(self, key: str) -> ModelStats | None:
        """The model's last figures read (None: none yet). No I/O: when they are older than
        ``refresh_seconds``, a refresh is started in the background and this call goes on."""
        if time.monotonic() >= self._due:
            self._refresh_start()
        return self.table.get(key)

    def hold(self, table: dict[str, ModelStats]) -> None:
        """Serve these figures from now on and refresh no more (tests of what reads them)."""
        self.table = dict(table)
        self._due = math.inf

    def _refresh(self) -> None:
        try:
            self.read()  # every model's figures, into ``table``
        finally:
            self._refreshing.release()

    def _refresh_start(self) -> None:
        """One refresh at a time, in a daemon thread of its own: not an asyncio task, which
        would die with its loop (``asyncio.run`` per Celery task, ``async_to_sync``), nor the
        loop's default executor, which such a loop joins when it closes, making the request
        that started the refresh wait for Redis."""
        if not self._refreshing.acquire(blocking=False):
            return
        self._due = time.monotonic() + self.refresh_seconds
        try:
            threading.Thread(target=self._refresh, name="modelhub-stats", daemon=True).start()
        except RuntimeError:  # no thread to be had (interpreter shutting down)
            self._refreshing.release()


def stats_make(*, clock: Clock = time.time) -> LiveStats:
    """The process's statistics, from the settings in force: shared through Redis when
    ``REDIS_URL`` is set, this process's own otherwise."""
    hub = settings.MODELHUB
    window = float(hub.get("STATS_WINDOW_SECONDS", 900))
    store: Store = (
        RedisStatsStore(settings.REDIS_URL, clock=clock, window_seconds=window)
        if settings.REDIS_URL
        else LocalStatsStore(clock=clock, window_seconds=window)
    )
    return LiveStats(store, refresh_seconds=float(hub.get("STATS_REFRESH_SECONDS", 5)))


def stats_read(keys: Iterable[str] | None = None) -> dict[str, ModelStats]:
    """Each model's figures over the window (keys: "provider/model_id"; None: every model
    with requests in it). Models without requests in the window are absent."""
    from .runtime import runtime

    return runtime().stats.read(keys)


def window_seconds() -> int:
    """The window the figures cover, as the operator sees it (whole minutes)."""
    return len(minutes_of(0, float(settings.MODELHUB.get("STATS_WINDOW_SECONDS", 900)))) * MINUTE

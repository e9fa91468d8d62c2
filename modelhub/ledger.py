"""The usage ledger and health record writer.

The chat path never waits on the database: it hands rows to this writer, which stores
them in batches from one background thread (a database write per request would cost a
thread hop under ASGI). Each usage row is first appended to the process's spool
(``modelhub.spool``; about 10 µs a row, see ``bench/ledger_spool.py``), so a process that
dies loses none of the rows it had not stored: a sweeper replays the spools of dead
processes, at the web server's start-up, every ``LEDGER_SWEEP_SECONDS`` in each writer
thread, and as the Celery task ``ledger_sweep``. Rows are stored once each, by their attempt id (request id and attempt
number), however often they are replayed. A batch that fails to store stays queued and
spooled and is retried, so a database outage delays the ledger but loses nothing; the
queue is flushed at exit (SIGTERM included).

Each batch also feeds the live statistics (``modelhub.stats``), in the same writer thread:
one Redis pipeline a batch, never on the chat path. Rows replayed from a dead process's spool
do not: their minutes have mostly left the statistics' window.

Health rows are not spooled: they are state, not history. Each process re-learns a model's
health from its next call, and the probes re-learn it every few minutes."""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, close_old_connections, transaction

from .models import ModelHealth, UsageRecord
from .routing.health import Health
from .runtime import runtime
from .spool import Spool, orphans_replay, spool_make

log = logging.getLogger("modelhub.ledger")

# While the database is away, a reminder this often (the writer retries 4 times a second).
FAILURE_LOG_SECONDS = 30.0
SPOOLED_FIELDS = [field for field in UsageRecord._meta.concrete_fields if not field.primary_key]
SPOOLED_NAMES = [field.attname for field in SPOOLED_FIELDS]
STATS_FED = "_stats_fed"  # set on a row once the live statistics have it


class Ledger:
    def __init__(self):
        self._usage: deque[UsageRecord] = deque()
        self._health: deque[tuple[int, Health]] = deque()
        self._spool = spool_make()
        self._queue_lock = threading.Lock()  # a row is spooled and queued as one step
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None  # monotonic, while flushes or sweeps fail
        self._warned_at = 0.0

    def submit_usage(self, record: UsageRecord) -> None:
        with self._queue_lock:
            if self._spool is not None:
                _usage_spool(self._spool, record)
            self._usage.append(record)
        self._ensure_writer()

    def submit_health(self, model_pk: int, health: Health) -> None:
        """Health changes are written at once: other workers learn of a cooldown from it."""
        self._health.append((model_pk, health))
        self._ensure_writer()
        self._wake.set()

    def pending(self) -> int:
        return len(self._usage) + len(self._health)

    def flush(self) -> int:
        """Store everything queued, in the calling thread. Returns the rows stored."""
        with self._flush_lock:
            return self._flush_health() + self._flush_usage()

    def sweep(self) -> int:
        """Store the spooled rows of processes that died. Returns the rows replayed (rows
        already stored are counted but not stored again)."""
        if self._spool is None:
            return 0
        return orphans_replay(self._spool.directory, replay=usage_replay)

    def _flush_usage(self) -> int:
        with self._queue_lock:
            batch = list(self._usage)
            self._usage.clear()
            if self._spool is not None:
                self._spool.seal()
        if batch:
            _stats_feed(batch)
            try:
                usage_store(batch)
            except Exception:  # queued again, whatever failed: the spool counts on it
                self._usage.extendleft(reversed(batch))
                raise
        if self._spool is not None:
            self._spool.acknowledge()
        return len(batch)

    def _flush_health(self) -> int:
        stored = 0
        while self._health:
            model_pk, health = self._health[0]
            try:
                health_store(model_pk=model_pk, health=health)
            except IntegrityError:
                log.warning("health of model %s not stored: the model is gone", model_pk)
            self._health.popleft()
            stored += 1
        return stored

    def _ensure_writer(self) -> None:
        if self._thread is None and settings.MODELHUB["LEDGER_BACKGROUND"]:
            self._thread = threading.Thread(target=self._run, name="modelhub-ledger", daemon=True)
            self._thread.start()
            atexit.register(self._flush_at_exit)

    def _run(self) -> None:
        interval = settings.MODELHUB["LEDGER_FLUSH_SECONDS"]
        sweep_every = settings.MODELHUB["LEDGER_SWEEP_SECONDS"]
        next_sweep = time.monotonic() + sweep_every
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            self._step(self.flush)
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + sweep_every
                self._step(self.sweep)

    def _step(self, step) -> None:
        """One flush or sweep; during an outage the first failure is logged with its traceback,
        the rest once every ``FAILURE_LOG_SECONDS`` (not four times a second)."""
        try:
            step()
        except Exception as exc:
            now = time.monotonic()
            if self._failing_since is None:
                log.exception("ledger %s failed; %d rows queued, kept for the next try", step.__name__, self.pending())
                self._failing_since = self._warned_at = now
            elif now - self._warned_at >= FAILURE_LOG_SECONDS:
                log.warning("ledger %s still failing; %d rows queued: %s", step.__name__, self.pending(), exc)
                self._warned_at = now
            close_old_connections()
        else:
            if self._failing_since is not None:
                log.warning("ledger writes work again after %.0f s", time.monotonic() - self._failing_since)
                self._failing_since = None

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except Exception:
            log.exception("ledger flush at exit failed; %d rows left in the spool for the next start", self.pending())


def _stats_feed(batch: list[UsageRecord]) -> None:
    """Feed the live statistics, before the rows are stored so that a database outage does
    not blind them, and once per row: a batch that failed to store comes round again."""
    fresh = [record for record in batch if not record.__dict__.get(STATS_FED)]
    if fresh:
        runtime().stats.feed(fresh)
        for record in fresh:
            record.__dict__[STATS_FED] = True


def _usage_spool(spool: Spool, record: UsageRecord) -> None:
    try:
        spool.append(usage_line(record))
    except OSError as exc:
        log.error("usage row %s #%s not spooled, queued in memory only: %s", record.request_id, record.attempt, exc)


def usage_line(record: UsageRecord) -> bytes:
    """The row as one spool line (JSON; the cost as an exact decimal string)."""
    row = {name: getattr(record, name) for name in SPOOLED_NAMES}
    return orjson.dumps(row, default=str, option=orjson.OPT_APPEND_NEWLINE)


def usage_replay(lines: list[bytes]) -> int:
    """Store the rows of spool lines; an unreadable line is skipped. Returns the rows read."""
    records = []
    for line in lines:
        try:
            records.append(_usage_from_line(line))
        except (LookupError, ValueError, TypeError, ValidationError) as exc:
            log.warning("spooled usage row skipped, unreadable: %s", exc)
    if records:
        usage_store(records)
    return len(records)


def _usage_from_line(line: bytes) -> UsageRecord:
    row = orjson.loads(line)
    return UsageRecord(**{field.attname: field.to_python(row[field.attname]) for field in SPOOLED_FIELDS})


def usage_store(records: list[UsageRecord]) -> None:
    """Store each row once: a row whose attempt (request id, attempt number) is already in
    the ledger is dropped, so a replayed spool or a retried batch never counts twice."""
    try:
        _usage_insert(records)
    except IntegrityError:
        for record in records:
            _usage_store_one(record)


def _usage_store_one(record: UsageRecord) -> None:
    """A row whose API key was deleted meanwhile is kept, without the key; a row the
    database refuses even so is logged and dropped rather than retried for ever."""
    try:
        _usage_insert([record])
    except IntegrityError:
        record.api_key_id = None
        try:
            _usage_insert([record])
        except IntegrityError as exc:
            log.error("usage row %s #%s refused by the database, dropped: %s", record.request_id, record.attempt, exc)


def _usage_insert(records: list[UsageRecord]) -> None:
    with transaction.atomic():
        UsageRecord.objects.bulk_create(
            records, batch_size=settings.MODELHUB["LEDGER_BATCH_SIZE"], ignore_conflicts=True
        )


def _dt(epoch: float):
    return datetime.fromtimestamp(epoch, tz=UTC) if epoch else None


def health_store(*, model_pk: int, health: Health) -> None:
    """Persist one health transition (its save signal bumps the health version, so every
    worker reloads the health rows, not its whole snapshot)."""
    at = _dt(health.changed_at)
    failing = bool(health.last_error_kind) and health.consecutive_failures > 0
    row, _ = ModelHealth.objects.get_or_create(model_id=model_pk)
    row.state = health.state
    row.cooldown_until = _dt(health.cooldown_until)
    row.cooldown_reason = health.cooldown_reason
    row.consecutive_failures = health.consecutive_failures
    if failing:
        row.last_error_kind, row.last_error_message = health.last_error_kind, health.last_error_message
        row.last_failure_at = at
        row.failure_count += 1
    else:
        row.last_success_at = at
        row.success_count += 1
    row.save()

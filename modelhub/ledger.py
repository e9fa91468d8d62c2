"""The usage ledger and health record writer.

The chat path never waits on the database: it hands rows to this writer, which stores
them in batches from one background thread (a database write per request would cost a
thread hop under ASGI). A batch that fails to store stays queued and is retried, so a
database outage delays the ledger but loses nothing; the queue is flushed at exit."""

from __future__ import annotations

import atexit
import logging
import threading
from collections import deque
from datetime import UTC, datetime

from django.conf import settings
from django.db import DatabaseError, IntegrityError, close_old_connections, transaction

from .models import ModelHealth, UsageRecord
from .routing.health import Health

log = logging.getLogger("modelhub.ledger")


class Ledger:
    def __init__(self):
        self._usage: deque[UsageRecord] = deque()
        self._health: deque[tuple[int, Health]] = deque()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def submit_usage(self, record: UsageRecord) -> None:
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

    def _flush_usage(self) -> int:
        batch = [self._usage.popleft() for _ in range(len(self._usage))]
        if not batch:
            return 0
        try:
            try:
                with transaction.atomic():
                    UsageRecord.objects.bulk_create(batch, batch_size=settings.MODELHUB["LEDGER_BATCH_SIZE"])
            except IntegrityError:
                for record in batch:
                    _usage_store_one(record)
        except DatabaseError:
            self._usage.extendleft(reversed(batch))
            raise
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
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("ledger flush failed; %d rows kept for the next try", self.pending())
                close_old_connections()

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except Exception:
            log.exception("ledger flush at exit failed; %d rows lost", self.pending())


def _usage_store_one(record: UsageRecord) -> None:
    """A row whose API key was deleted meanwhile is kept, without the key."""
    try:
        with transaction.atomic():
            record.save(force_insert=True)
    except IntegrityError:
        record.pk, record.api_key_id = None, None
        record.save(force_insert=True)


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
    row.consecutive_failures = health.consecutive_failures
    if failing:
        row.last_error_kind, row.last_error_message = health.last_error_kind, health.last_error_message
        row.last_failure_at = at
        row.failure_count += 1
    else:
        row.last_success_at = at
        row.success_count += 1
    row.save()

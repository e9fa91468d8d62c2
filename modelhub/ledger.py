"""The usage ledger and health record writer.

The chat path never waits on the database: it hands rows to this writer, which stores
them in batches from one background thread (a database write per request would cost a
thread hop under ASGI). Each usage row is first appended to the process's spool
(``modelhub.spool``; about 10 µs a row, see ``bench/ledger_spool.py``), so a process that
dies loses none of the rows it had not stored: a sweeper replays the spools of dead
processes, at the web server's start-up, every ``LEDGER_SWEEP_SECONDS`` in each writer
thread, and as the Celery task ``ledger_sweep``. Rows are stored once each, by their attempt id (request id and attempt
number), however often they are replayed. A batch that fails to store because of the
database as a whole (away, read-only, not migrated) stays queued and spooled and is retried,
so an outage delays the ledger but loses nothing; a batch that one of its rows fails is
stored row by row, and a row the database refuses
on its own is repaired where that is safe or else set aside in the spool directory's
``rejected.jsonl``, so one bad row never holds up the others. Rows of a day that had ended
reopen its cost rollup (``costs.rollup_reopen``). The queue is flushed at exit (SIGTERM
included).

Each batch also feeds the live statistics (``modelhub.stats``), in the same writer thread:
one Redis pipeline a batch, never on the chat path. Rows replayed from a dead process's spool
do not: their minutes have mostly left the statistics' window.

Health rows are not spooled: they are state, not history. Each process re-learns a model's
health from its next call, and the probes re-learn it every few minutes."""

from __future__ import annotations

import atexit
import copy
import logging
import threading
import time
from collections import Counter, deque
from datetime import UTC, datetime

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, close_old_connections, transaction

from .costs import rollup_reopen
from .models import ModelHealth, UsageRecord
from .routing.health import Health
from .runtime import runtime
from .selectors import today
from .spool import Spool, orphans_replay, rejected_append, spool_make

log = logging.getLogger("modelhub.ledger")

# While the database is away, a reminder this often (the writer retries 4 times a second).
FAILURE_LOG_SECONDS = 30.0
SPOOLED_FIELDS = [field for field in UsageRecord._meta.concrete_fields if not field.primary_key]
SPOOLED_NAMES = [field.attname for field in SPOOLED_FIELDS]
# A field a spool line lacks (spooled before the field was added) takes its default, but for these.
SPOOLED_REQUIRED = frozenset(f.attname for f in SPOOLED_FIELDS if not (f.has_default() or f.null or f.blank))
# What the database says of one row (a constraint, a value it cannot take): a batch that
# fails so is stored row by row. Anything else (unreachable, read-only after a failover, a
# schema not migrated yet, a permission taken away) is about every row: the batch is retried
# whole, later, and nothing is set aside.
ROW_REFUSED = (IntegrityError, DataError, ValueError, OverflowError)
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
    not blind them, and once per row: a batch that failed to store comes round again. A feed
    that fails is logged and costs the batch nothing: it was taken off the queue already."""
    fresh = [record for record in batch if not record.__dict__.get(STATS_FED)]
    if not fresh:
        return
    try:
        runtime().stats.feed(fresh)
    except Exception:
        log.exception("live statistics not fed %d usage rows; they are stored all the same", len(fresh))
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
    """A field the line lacks (it was spooled by an older version) takes its default, unless
    it is in SPOOLED_REQUIRED; a field the ledger no longer has is ignored."""
    row = orjson.loads(line)
    missing = SPOOLED_REQUIRED.difference(row)
    if missing:
        raise KeyError(f"no {', '.join(sorted(missing))}")
    return UsageRecord(**{f.attname: f.to_python(row[f.attname]) for f in SPOOLED_FIELDS if f.attname in row})


def usage_store(records: list[UsageRecord]) -> None:
    """Store each row once: a row whose attempt (request id, attempt number) is already in
    the ledger is dropped, so a replayed spool or a retried batch never counts twice. A batch
    that one of its rows fails (``ROW_REFUSED``) is stored row by row; any other failure is
    raised, the batch retried whole. Rows of days that had ended reopen those days' rollup."""
    try:
        _usage_insert(records)
        stored = records
    except ROW_REFUSED:  # one row the database refuses must not hold up the others
        stored = [record for record in records if _usage_store_one(record)]
    this_day = today()
    late = Counter(day for record in stored if (day := record.created_at.astimezone(UTC).date()) < this_day)
    if late:
        rollup_reopen(late=late)


def _usage_store_one(record: UsageRecord) -> bool:
    """Store one row, repaired where that is safe (``_usage_repair``); a row the database
    refuses even so is set aside, neither retried for ever nor dropped unseen. Returns
    whether it was stored."""
    original = copy.copy(record)
    while True:
        try:
            _usage_insert([record])
            return True
        except ROW_REFUSED as exc:  # the row is repaired or set aside
            if not _usage_repair(record, exc):
                _usage_reject(original, exc)
                return False


def _usage_repair(record: UsageRecord, refused: Exception) -> bool:
    """Mend what made the database refuse the row, if it is safe to: the API key, deleted
    meanwhile, is dropped; NUL characters (PostgreSQL takes none in text or jsonb) are
    stripped. Each repair applies once, so the retries end. Returns whether one applied."""
    if isinstance(refused, IntegrityError) and record.api_key_id is not None:
        record.api_key_id = None
        return True
    stripped = False
    for name in SPOOLED_NAMES:
        value = getattr(record, name)
        if isinstance(value, str | dict | list) and (clean := _without_nul(value)) != value:
            setattr(record, name, clean)
            stripped = True
    return stripped


def _without_nul(value):
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def _usage_reject(record: UsageRecord, refused: Exception) -> None:
    """Set the row aside as it came, for an operator. The log names the row and the refusal's
    first line, not the row's text (its error message may quote anything)."""
    why = f"{type(refused).__name__}: " + str(refused).partition("\n")[0]
    try:
        path = rejected_append(usage_line(record), attempt=(record.request_id, record.attempt))
        fate = f"set aside in {path}" if path else "dropped (no spool directory)"
    except (OSError, TypeError) as exc:  # a full disk; a value that has no JSON form
        fate = f"dropped, not set aside: {exc}"
    log.error("usage row %s #%s refused by the database (%s), %s", record.request_id, record.attempt, why, fate)


def _usage_insert(records: list[UsageRecord]) -> None:
    with transaction.atomic():
        UsageRecord.objects.bulk_create(
            records, batch_size=settings.MODELHUB["LEDGER_BATCH_SIZE"], ignore_conflicts=True
        )


def _dt(epoch: float):
    return datetime.fromtimestamp(epoch, tz=UTC) if epoch else None


def health_store(*, model_pk: int, health: Health) -> None:
    """Persist one health transition (its save signal bumps the health version, so every
    worker reloads the health rows, not its whole snapshot). Another process may have
    stored a cooling for the model since this one's board last read it: a cooling is merged
    with it, the later deadline (and its reason) and the longer streak kept, rather than
    written over it; a recovery replaces it. The row is read and written under its lock."""
    at = _dt(health.changed_at)
    failing = bool(health.last_error_kind) and health.consecutive_failures > 0
    ModelHealth.objects.get_or_create(model_id=model_pk)
    with transaction.atomic():
        row = ModelHealth.objects.select_for_update().get(model_id=model_pk)
        until, reason, streak = _dt(health.cooldown_until), health.cooldown_reason, health.consecutive_failures
        if failing and row.state == ModelHealth.State.COOLING_DOWN:
            streak = max(streak, row.consecutive_failures)
            if row.cooldown_until is not None and (until is None or row.cooldown_until > until):
                until, reason = row.cooldown_until, row.cooldown_reason
        row.state = health.state
        row.cooldown_until, row.cooldown_reason, row.consecutive_failures = until, reason, streak
        if failing:
            row.last_error_kind, row.last_error_message = health.last_error_kind, health.last_error_message
            row.last_failure_at = at
            row.failure_count += 1
        else:
            row.last_success_at = at
            row.success_count += 1
        row.save()

"""Cost rollups: the usage ledger summed into DailyCost, and ledger retention.

A day is recomputed from the ledger as a whole (delete its rows, insert the sums) while
holding a row lock on its RollupDay, so a rollup run twice or concurrently leaves the same
figures, and they equal the ledger's sums: PostgreSQL sums numeric exactly (SQLite, the
embedded default, stores 15 significant digits). Rows stored after their day ended (a dead
process's spool is replayed with its rows' own times) reopen that day, however final it was."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Min

from .models import DailyCost, RollupDay, UsageRecord
from .selectors import day_bounds, ledger_sums, today

log = logging.getLogger("modelhub.costs")

# A day is final once rolled up this long after it ended: late ledger batches are in.
FINAL_AFTER = timedelta(minutes=10)


def rollup_day(*, day: date) -> int:
    """Recompute one day's DailyCost rows from the ledger. Returns the rows written."""
    RollupDay.objects.get_or_create(day=day)
    with transaction.atomic():
        bookkeeping = RollupDay.objects.select_for_update().get(day=day)
        if bookkeeping.pruned_at is not None:
            return 0  # its ledger is gone: the sums it left are all there is
        sums = ledger_sums(day=day)
        DailyCost.objects.filter(day=day).delete()
        DailyCost.objects.bulk_create(
            DailyCost(day=day, **{("api_key_id" if k == "api_key" else k): v for k, v in row.items()}) for row in sums
        )
        bookkeeping.rolled_up_at = datetime.now(UTC)
        bookkeeping.ledger_rows = sum(row["attempts"] for row in sums)
        bookkeeping.save(update_fields=["rolled_up_at", "ledger_rows"])
    return len(sums)


def _is_final(bookkeeping: RollupDay) -> bool:
    if bookkeeping.pruned_at is not None:
        return True
    done = bookkeeping.rolled_up_at
    return done is not None and done >= day_bounds(bookkeeping.day)[1] + FINAL_AFTER


def days_to_roll_up(*, until: date) -> list[date]:
    """Every day after the last final one (on the first run: from the ledger's first day),
    and the days before it that late rows reopened."""
    last_final = next((d.day for d in RollupDay.objects.order_by("-day").iterator() if _is_final(d)), None)
    if last_final is not None:
        start = last_final + timedelta(days=1)
    else:
        first_row = UsageRecord.objects.aggregate(first=Min("created_at"))["first"]
        start = min(first_row.date(), until) if first_row else until
    reopened = RollupDay.objects.filter(day__lt=start, rolled_up_at__isnull=True, pruned_at__isnull=True)
    return [
        *reopened.order_by("day").values_list("day", flat=True),
        *(start + timedelta(days=n) for n in range((until - start).days + 1)),
    ]


def rollup_reopen(*, late: Mapping[date, int]) -> None:
    """The ledger stored rows (``late``: how many per day) of days that had ended: the next
    rollup recomputes those days, however final they were (their rollup time is cleared,
    which also holds off their pruning until then). A pruned day keeps the sums it left; its
    late rows stay in the ledger, out of its daily costs, and are logged."""
    RollupDay.objects.bulk_create([RollupDay(day=day) for day in late], ignore_conflicts=True)
    RollupDay.objects.filter(day__in=late, pruned_at__isnull=True).update(rolled_up_at=None)
    for day in RollupDay.objects.filter(day__in=late, pruned_at__isnull=False).values_list("day", flat=True):
        log.warning(
            "%d usage rows of %s stored after its ledger was pruned: kept in the ledger, not in its daily costs",
            late[day],
            day,
        )


def costs_rollup(*, day: date | None = None) -> dict[date, int]:
    """Roll up ``day``, or every day that is not final yet. Returns rows written per day."""
    days = [day] if day else days_to_roll_up(until=today())
    written = {d: rollup_day(day=d) for d in days}
    log.info("cost rollup: %s", ", ".join(f"{d}={n}" for d, n in written.items()) or "nothing to do")
    return written


def usage_prune(*, now: datetime | None = None) -> int:
    """Delete ledger rows older than the retention setting, day by day, and only days whose
    rollup is final. Returns the rows deleted."""
    now = now or datetime.now(UTC)
    horizon = (now - timedelta(days=settings.MODELHUB["USAGE_RETENTION_DAYS"])).date()
    deleted = 0
    for bookkeeping in RollupDay.objects.filter(
        day__lt=horizon, pruned_at__isnull=True, rolled_up_at__isnull=False
    ).order_by("day"):
        deleted += _prune_day(bookkeeping.day, now)
    return deleted


def _prune_day(day: date, now: datetime) -> int:
    start, end = day_bounds(day)
    with transaction.atomic():
        bookkeeping = RollupDay.objects.select_for_update().get(day=day)
        done = bookkeeping.rolled_up_at  # None: reopened by late rows since it was listed
        if done is None or done < end + FINAL_AFTER:
            rollup_day(day=day)  # runs inside this transaction and lock
        deleted, _ = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end).delete()
        RollupDay.objects.filter(day=day).update(pruned_at=now)
    log.info("pruned %d ledger rows of %s", deleted, day)
    return deleted

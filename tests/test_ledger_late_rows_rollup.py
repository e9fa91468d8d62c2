"""Rows stored after their day ended (a dead process's spool is replayed with its rows' own
times) reach that day's costs: storing them reopens the day, and the next rollup sums it
again, however final it was. A pruned day keeps its sums; its late rows are logged."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db.models import Sum

from modelhub import costs
from modelhub.costs import costs_rollup, days_to_roll_up, usage_prune
from modelhub.ledger import usage_line
from modelhub.models import DailyCost, RollupDay, UsageRecord
from modelhub.runtime import runtime
from modelhub.selectors import today
from tests.factories import UsageRecordFactory

pytestmark = pytest.mark.django_db
DAY = (datetime.now(UTC) - timedelta(days=2)).date()
AT = datetime.combine(DAY, time(23, 50), tzinfo=UTC)


def rolled_up_cost(day) -> Decimal | None:
    return DailyCost.objects.filter(day=day).aggregate(cost=Sum("cost_usd"))["cost"]


def a_final_day() -> None:
    """DAY with one row of 1 USD, rolled up more than FINAL_AFTER after it ended."""
    UsageRecordFactory(created_at=AT, cost_usd=Decimal("1"))
    costs_rollup()
    assert DAY not in days_to_roll_up(until=today())


def test_a_late_replayed_row_reaches_the_costs_of_a_final_day(settings):
    a_final_day()
    spool = Path(settings.MODELHUB["SPOOL_DIR"])
    spool.mkdir(parents=True, exist_ok=True)
    (spool / "4242-late.spool").write_bytes(usage_line(UsageRecordFactory.build(created_at=AT, cost_usd=2)))

    assert runtime().ledger.sweep() == 1
    assert DAY in days_to_roll_up(until=today())
    costs_rollup()

    assert rolled_up_cost(DAY) == Decimal("3")
    assert DAY not in days_to_roll_up(until=today())  # final again


def test_a_late_row_from_the_writer_reaches_the_costs_of_a_final_day():
    a_final_day()
    ledger = runtime().ledger
    ledger.submit_usage(UsageRecordFactory.build(created_at=AT, cost_usd=Decimal("2")))
    ledger.flush()

    costs_rollup()

    assert rolled_up_cost(DAY) == Decimal("3")


def test_a_late_row_for_a_day_before_the_first_rollup_is_rolled_up():
    a_final_day()
    earlier = DAY - timedelta(days=3)
    ledger = runtime().ledger
    ledger.submit_usage(UsageRecordFactory.build(created_at=AT - timedelta(days=3), cost_usd=Decimal("2")))
    ledger.flush()

    costs_rollup()

    assert rolled_up_cost(earlier) == Decimal("2")


def test_late_rows_for_a_pruned_day_are_logged_and_leave_its_sums(settings, caplog):
    settings.MODELHUB = {**settings.MODELHUB, "USAGE_RETENTION_DAYS": 1}
    a_final_day()
    assert usage_prune() == 1
    ledger = runtime().ledger
    for record in UsageRecordFactory.build_batch(2, created_at=AT, cost_usd=Decimal("2")):
        ledger.submit_usage(record)

    with caplog.at_level(logging.WARNING, logger="modelhub.costs"):
        ledger.flush()
    costs_rollup()

    assert rolled_up_cost(DAY) == Decimal("1")
    assert UsageRecord.objects.count() == 2  # kept in the ledger
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "2 usage rows" in warnings[0] and str(DAY) in warnings[0]


def test_a_day_reopened_between_listing_and_pruning_is_rolled_up_before_it_is_pruned():
    """usage_prune lists the days to prune, then locks each in turn: late rows may reopen a
    day in between (its rollup time cleared)."""
    a_final_day()
    UsageRecordFactory(created_at=AT, cost_usd=Decimal("2"))
    RollupDay.objects.filter(day=DAY).update(rolled_up_at=None)

    assert costs._prune_day(DAY, datetime.now(UTC)) == 2

    assert rolled_up_cost(DAY) == Decimal("3")
    assert RollupDay.objects.get(day=DAY).pruned_at is not None

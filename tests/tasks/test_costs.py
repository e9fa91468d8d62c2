"""Cost rollups: the ledger summed into DailyCost, exactly, however often it runs."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from modelhub import tasks
from modelhub.costs import costs_rollup, rollup_day
from modelhub.models import DailyCost, RollupDay, UsageRecord
from tests.factories import ApiKeyFactory, UsageRecordFactory

pytestmark = pytest.mark.django_db
NOW = datetime.now(UTC)
TODAY = NOW.date()
# Sums that a float would get wrong and cents-rounding would lose.
COSTS = [
    Decimal("0.000000000001"),
    Decimal("0.1"),
    Decimal("0.2"),
    Decimal("0.000148123456"),
    Decimal("3.000000000007"),
    Decimal("0.000000000001"),
]


def _ledger(day_offset=0, **fields):
    at = NOW - timedelta(days=day_offset)
    return UsageRecordFactory(created_at=at, **fields)


@pytest.fixture
def day_of_traffic():
    key = ApiKeyFactory()
    for cost in COSTS:
        _ledger(route="pam", model="m-a", provider="p", api_key=key, cost_usd=cost)
    # one request that failed over: attempt 1 failed on m-a, attempt 2 answered on m-b
    _ledger(
        request_id="req-fo",
        attempt=1,
        route="pam",
        model="m-a",
        provider="p",
        api_key=key,
        outcome="overloaded",
        input_tokens=0,
        output_tokens=0,
        cost_usd=0,
    )
    _ledger(
        request_id="req-fo",
        attempt=2,
        route="pam",
        model="m-b",
        provider="p",
        api_key=key,
        is_fallback=True,
        cost_usd=Decimal("0.5"),
    )
    _ledger(route="", model="m-a", provider="p", is_probe=True, cost_usd=Decimal("0.000001"))
    return key


def _totals(**filters):
    return DailyCost.objects.filter(**filters).aggregate(
        cost=Sum("cost_usd"), requests=Sum("requests"), attempts=Sum("attempts")
    )


def test_rollup_totals_equal_the_ledger_sums_exactly(day_of_traffic):
    costs_rollup()

    ledger_cost = sum(UsageRecord.objects.values_list("cost_usd", flat=True), Decimal(0))
    assert _totals(day=TODAY)["cost"] == ledger_cost == sum(COSTS) + Decimal("0.500001")
    a = DailyCost.objects.get(model="m-a", is_probe=False)
    assert (a.requests, a.attempts, a.failures, a.fallbacks) == (6, 7, 1, 0)
    assert (a.input_tokens, a.output_tokens) == (12 * 6, 34 * 6)
    assert a.api_key == day_of_traffic and a.route == "pam"
    b = DailyCost.objects.get(model="m-b")
    assert (b.requests, b.attempts, b.failures, b.fallbacks) == (1, 1, 0, 1)
    assert DailyCost.objects.get(is_probe=True).cost_usd == Decimal("0.000001")


def test_rollup_twice_gives_the_same_totals(day_of_traffic):
    costs_rollup()
    first = list(
        DailyCost.objects.order_by("model", "is_probe").values("model", "is_probe", "requests", "attempts", "cost_usd")
    )

    tasks.rollup_costs.apply().get()
    costs_rollup(day=TODAY)

    again = list(
        DailyCost.objects.order_by("model", "is_probe").values("model", "is_probe", "requests", "attempts", "cost_usd")
    )
    assert again == first and len(first) == 3


def test_rollup_picks_up_rows_added_since_the_last_run(day_of_traffic):
    costs_rollup()
    _ledger(route="pam", model="m-a", provider="p", api_key=day_of_traffic, cost_usd=Decimal("1"))

    costs_rollup()

    assert _totals(day=TODAY)["cost"] == sum(COSTS) + Decimal("1.500001")


def test_first_rollup_covers_every_day_of_the_ledger():
    _ledger(day_offset=2, cost_usd=Decimal("0.25"))
    _ledger(day_offset=0, cost_usd=Decimal("0.5"))

    written = costs_rollup()

    assert sorted(written) == [TODAY - timedelta(days=2), TODAY - timedelta(days=1), TODAY]
    assert _totals(day=TODAY - timedelta(days=2))["cost"] == Decimal("0.25")
    assert list(costs_rollup()) == [TODAY]  # the past days are final now


@pytest.mark.django_db(transaction=True)
def test_concurrent_rollups_give_the_same_totals_on_postgresql(postgres_only):
    for cost in COSTS * 5:
        _ledger(cost_usd=cost)
    expected = sum(COSTS * 5, Decimal(0))
    start = threading.Barrier(4)

    def roll():
        try:
            for _ in range(3):
                start.wait(timeout=10)
                rollup_day(day=TODAY)
        finally:
            connection.close()

    threads = [threading.Thread(target=roll) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert _totals(day=TODAY) == {"cost": expected, "requests": 30, "attempts": 30}
    assert DailyCost.objects.count() == 1


def test_retention_deletes_only_old_rows_whose_day_is_rolled_up(settings):
    settings.MODELHUB = {**settings.MODELHUB, "USAGE_RETENTION_DAYS": 90}
    _ledger(day_offset=100, cost_usd=Decimal("2"))
    _ledger(day_offset=95, cost_usd=Decimal("3"))
    recent = _ledger(day_offset=1, cost_usd=Decimal("4"))
    rollup_day(day=TODAY - timedelta(days=100))  # day -95 never rolled up

    deleted = tasks.prune_usage.apply().get()

    assert deleted == 1
    assert sorted(UsageRecord.objects.values_list("cost_usd", flat=True)) == [Decimal("3"), recent.cost_usd]
    old_day = TODAY - timedelta(days=100)
    assert RollupDay.objects.get(day=old_day).pruned_at is not None
    costs_rollup(day=old_day)  # a later rollup must not wipe what the pruned ledger left
    assert _totals(day=old_day)["cost"] == Decimal("2")

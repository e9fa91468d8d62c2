"""Budgets without overspend: a request holds its worst-case cost before its call and
settles it after, so concurrent requests cannot together pass a key's daily budget by
more than one request's worst case."""

import asyncio
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db.models import Sum

from modelhub.limits import LimitExceeded, budget_reserve, budget_settle
from modelhub.models import UsageRecord
from modelhub.routing.snapshot import KeySpec
from modelhub.runtime import runtime
from tests.hubserver import hub_server, live  # noqa: F401 - fixtures

# The worst case of {"message": "Hi", "max_tokens": 20}: 2 characters in, 20 tokens out.
WORST = Decimal(2 * 3 + 20 * 15) / 1_000_000
BUDGET = Decimal("0.001")


def _key(pk=1, budget=BUDGET) -> KeySpec:
    return KeySpec(pk=pk, name="k", is_staff=False, daily_budget_usd=budget)


def test_a_reservation_is_capped_by_what_is_left_then_refused():
    async def scenario():
        key = _key(budget=Decimal("0.0005"))
        first = await budget_reserve(key=key, worst=Decimal("0.0003"))
        second = await budget_reserve(key=key, worst=Decimal("0.0003"))
        with pytest.raises(LimitExceeded) as refused:
            await budget_reserve(key=key, worst=Decimal("0.0003"))
        await budget_settle(reservation=first, cost=Decimal("0.0001"))  # frees 0.0002
        third = await budget_reserve(key=key, worst=Decimal("0.0003"))
        return first, second, third, refused.value

    first, second, third, refused = asyncio.run(scenario())
    assert first.pico == 300_000_000 and second.pico == 200_000_000  # capped at what was left
    assert third.pico == 200_000_000
    assert (refused.status, refused.code) == (429, "budget_exceeded")


def test_a_failed_request_releases_its_reservation():
    async def scenario():
        key = _key(budget=Decimal("0.0003"))
        held = await budget_reserve(key=key, worst=Decimal("0.0003"))
        await budget_settle(reservation=held, cost=Decimal(0))
        return await budget_reserve(key=key, worst=Decimal("0.0003"))

    assert asyncio.run(scenario()).pico == 300_000_000


def test_a_key_without_budget_reserves_nothing():
    assert asyncio.run(budget_reserve(key=_key(budget=None), worst=Decimal(1))) is None


def chat_post(url: str, key: str, body: dict | None = None) -> int:
    """POST a chat request (by default a short one) to a live hub; its status."""
    request = urllib.request.Request(
        f"{url}/api/v1/pam/chat",
        data=json.dumps(body or {"message": "Hi", "max_tokens": 20}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_100_concurrent_requests_stop_at_the_budget(live, sim, monkeypatch):
    live.route("pam", [live.model("only", "openai")])
    live.key_obj.daily_budget_usd = BUDGET
    live.key_obj.save()
    monkeypatch.setattr(sim, "default_latency_ms", 50)  # the requests overlap

    with ThreadPoolExecutor(max_workers=100) as pool:
        statuses = list(pool.map(lambda _: chat_post(live.server.url, live.key), range(100)))
    runtime().ledger.flush()
    rows = UsageRecord.objects.filter(api_key=live.key_obj, outcome="ok")
    spent = rows.aggregate(total=Sum("cost_usd"))["total"]

    answered = statuses.count(200)
    assert set(statuses) <= {200, 429} and statuses.count(429) > 0
    assert rows.count() == answered == len(sim.calls)
    assert spent <= BUDGET + WORST  # at most one request's worst case over
    assert answered >= int(BUDGET / WORST)  # the budget is used, not refused early

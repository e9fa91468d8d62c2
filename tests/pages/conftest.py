"""The pages' callers (a staff user, a signed-in user who is not staff, nobody) and a
ledger whose figures are known."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client

from tests.factories import AIModelFactory, ProviderFactory, RouteFactory, UsageRecordFactory


@pytest.fixture
def staff_client(db, django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_user("ops", is_staff=True))
    return client


@pytest.fixture
def user_client(db, django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_user("plain"))
    return client


@dataclass
class Ledger:
    """Route r1 (chain m1 → m2) and route r2 (m2) in the last 24 hours:

    A  r1  m1 ok 100 ms $0.001
    B  r1  m1 overloaded, then m2 ok 300 ms $0.002 (a failover)
    C  r1  m1 timeout, then m2 server (an error)
    D  r2  m2 ok 200 ms $0.0005
    and a probe of m1 ($0.1, spend only) and a row 30 hours old (outside the window)."""

    provider: str
    m1: str
    m2: str
    when: datetime


def _row(ledger_time, request_id, route, model, attempt=1, outcome="ok", latency=0, cost="0", **extra):
    return UsageRecordFactory(
        created_at=ledger_time,
        request_id=request_id,
        route=route,
        model=model,
        attempt=attempt,
        outcome=outcome,
        latency_ms=latency,
        cost_usd=Decimal(cost),
        is_fallback=attempt > 1,
        **extra,
    )


@pytest.fixture
def ledger(db) -> Ledger:
    provider = ProviderFactory(name="prov-pages")
    m1, m2 = AIModelFactory(provider=provider, model_id="m-one"), AIModelFactory(provider=provider, model_id="m-two")
    RouteFactory(name="r1", chain=[m1, m2])
    RouteFactory(name="r2", chain=[m2])
    when = datetime.now(UTC) - timedelta(minutes=20)
    p = {"provider": provider.name}
    _row(when, "a" * 32, "r1", "m-one", latency=100, cost="0.001", **p)
    _row(when, "b" * 32, "r1", "m-one", outcome="overloaded", latency=50, **p)
    _row(when, "b" * 32, "r1", "m-two", attempt=2, latency=300, cost="0.002", **p)
    _row(when, "c" * 32, "r1", "m-one", outcome="timeout", latency=5000, **p)
    _row(when, "c" * 32, "r1", "m-two", attempt=2, outcome="server", latency=20, error_message="500 boom", **p)
    _row(when, "d" * 32, "r2", "m-two", latency=200, cost="0.0005", **p)
    _row(when, "e" * 32, "", "m-one", latency=10, cost="0.1", is_probe=True, **p)
    _row(when - timedelta(hours=30), "f" * 32, "r1", "m-one", latency=999, cost="7", **p)
    return Ledger(provider.name, m1.model_id, m2.model_id, when)

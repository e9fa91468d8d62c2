"""Live model statistics: the figures equal the ledger's for a scripted sequence of chats,
in this process (the embedded default) and in Redis; the window drops old minutes; two
processes' attempts add up; admin and the admin API show them; a Redis outage keeps the
last figures and costs the chat path nothing."""

from __future__ import annotations

import itertools
import logging
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
import redis
from django.conf import settings as django_settings

from modelhub.admin.registry import usd
from modelhub.models import ModelHealth, UsageRecord
from modelhub.runtime import runtime
from modelhub.stats import (
    NO_REQUESTS,
    PREFIX,
    SAMPLES_PER_MINUTE,
    LiveStats,
    LocalStatsStore,
    ModelStats,
    RedisStatsStore,
    stats_make,
    stats_read,
)
from tests.hubserver import hub_server, live  # noqa: F401 - fixtures
from tests.test_dependency_failures import RedisServer, SilentServer

T0 = 1_800_000_000.0  # a minute boundary: 30,000,000 minutes
KEY = "sim-openai/m"
CLIENT_GONE = "client_disconnected"
_request_ids = itertools.count()


# --- helpers -------------------------------------------------------------------------


def row(at: float, *, model="m", provider="sim-openai", outcome="ok", latency=100, ttft=None, cost="0.001", **extra):
    """A ledger row as the router makes it (not stored)."""
    return UsageRecord(
        created_at=datetime.fromtimestamp(at, UTC),
        request_id=f"r{next(_request_ids)}",
        provider=provider,
        model=model,
        outcome=outcome,
        latency_ms=latency,
        ttft_ms=ttft,
        stream=ttft is not None,
        cost_usd=Decimal(cost),
        **extra,
    )


def ledger_figures(rows) -> dict[str, ModelStats]:
    """What the statistics should say, computed from ledger rows with the standard library."""
    by_model = defaultdict(list)
    for r in rows:
        if not r.is_probe and r.outcome != "client_disconnected":
            by_model[f"{r.provider}/{r.model}"].append(r)
    figures = {}
    for key, attempts in by_model.items():
        ok = [r for r in attempts if r.outcome == "ok"]
        latencies = sorted(r.latency_ms for r in ok)
        ttfts = [r.ttft_ms for r in ok if r.stream and r.ttft_ms is not None]
        figures[key] = ModelStats(
            requests=len(attempts),
            successes=len(ok),
            success_rate=len(ok) / len(attempts),
            p50_ms=statistics.median(latencies) if latencies else None,
            p95_ms=_p95(latencies),
            ttft_p50_ms=statistics.median(ttfts) if ttfts else None,
            cost_per_request=sum(r.cost_usd for r in attempts) / len(attempts),
        )
    return figures


def _p95(values: list[int]) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[94]


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def redis_url():
    """The test run's Redis (REDIS_URL) if there is one, else a private redis-server."""
    if django_settings.REDIS_URL:
        yield django_settings.REDIS_URL
        return
    server = RedisServer()
    try:
        server.start()
    except FileNotFoundError:
        pytest.skip("needs REDIS_URL or the redis-server binary")
    yield server.url
    server.kill()


@pytest.fixture
def redis_clean(redis_url):
    """No statistics left from an earlier test (the shared Redis outlives them)."""
    _stats_clear(redis_url)
    return redis_url


@pytest.fixture(autouse=True)
def _no_stats_left(settings):
    """Under REDIS_URL every test's chats feed the shared Redis: none of it here."""
    if settings.REDIS_URL:
        _stats_clear(settings.REDIS_URL)


def _stats_clear(url: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{PREFIX}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(params=["local", "redis"])
def store_of(request):
    """Makes a store of each kind: this process's, and Redis."""
    if request.param == "local":
        return lambda **kw: LocalStatsStore(**kw)
    url = request.getfixturevalue("redis_clean")
    return lambda **kw: RedisStatsStore(url, **kw)


# --- the figures equal the ledger's --------------------------------------------------


def _native(live, *, stream=False) -> int:
    request = urllib.request.Request(
        f"{live.server.url}/api/v1/pam/chat",
        data=orjson.dumps({"message": "Hi", "stream": stream}),
        headers={"Authorization": f"Bearer {live.key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return response.status


def _scripted_chats(live, sim, a, b) -> int:
    """Slow and fast answers, streams, a failure that fails over; returns the attempts made."""
    sim.set_fault(a.model_id, latency_ms=60, times=2)
    statuses = [_native(live) for _ in range(2)]
    statuses += [_native(live) for _ in range(3)]
    sim.set_pace(a.model_id, chunks=3, interval_ms=15)
    statuses += [_native(live, stream=True) for _ in range(2)]
    sim.set_fault(a.model_id, status=500, times=1)
    statuses.append(_native(live))  # a fails, b answers; a cools down
    sim.set_fault(b.model_id, latency_ms=40, times=2)  # before the first token
    statuses += [_native(live, stream=True) for _ in range(2)]
    sim.set_fault(b.model_id, latency_ms=30, times=1)
    statuses.append(_native(live))
    assert statuses == [200] * 11
    return 12


def _ledger_rows(count: int) -> list[UsageRecord]:
    """The ledger once it holds ``count`` rows (a stream's row is recorded as it ends)."""
    deadline = time.monotonic() + 5
    while True:
        runtime().ledger.flush()
        rows = list(UsageRecord.objects.all())
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


@pytest.mark.django_db(transaction=True)
def test_a_scripted_sequence_gives_the_ledgers_figures(live, sim, store_of):
    runtime().stats = LiveStats(store_of())
    a, b = live.model("a-m", "openai"), live.model("b-m", "anthropic")
    live.route("pam", [a, b])
    attempts = _scripted_chats(live, sim, a, b)
    for extra in (row(time.time(), model="a-m", is_probe=True), row(time.time(), model="a-m", outcome=CLIENT_GONE)):
        runtime().ledger.submit_usage(extra)  # a probe and an attempt whose client left: not counted

    rows = _ledger_rows(attempts + 2)
    found = stats_read()

    assert len(rows) == attempts + 2
    assert found == ledger_figures(rows)
    a_stats, b_stats = found["sim-openai/a-m"], found["sim-anthropic/b-m"]
    assert (a_stats.requests, a_stats.successes, b_stats.requests, b_stats.successes) == (8, 7, 4, 4)
    assert a_stats.p95_ms >= 60 > a_stats.p50_ms and b_stats.ttft_p50_ms >= 40 > a_stats.ttft_p50_ms


def test_what_counts(store_of):
    """A failure is a request that failed; its latency is not a sample. Probes and attempts
    whose client left are not requests. Only streams give a time to first token."""
    store = store_of(clock=Clock())
    stats = LiveStats(store)
    stats.feed(
        [
            row(T0, latency=100),
            row(T0, latency=300, ttft=40),
            row(T0, outcome="server", latency=5, cost="0"),
            row(T0, latency=1, is_probe=True),
            row(T0, outcome=CLIENT_GONE, latency=2),
        ]
    )
    assert stats.read() == {
        KEY: ModelStats(3, 2, 2 / 3, 200.0, 290.0, 40.0, Decimal("0.002") / 3),
    }


# --- the window and the samples ------------------------------------------------------


def test_the_window_drops_minutes_as_they_leave_it(store_of):
    clock = Clock()
    stats = LiveStats(store_of(clock=clock, window_seconds=600))  # this minute and the 9 before
    stats.feed([row(T0 - 600, latency=1), row(T0 - 540, latency=2), row(T0 - 60, latency=3), row(T0 + 59, latency=4)])

    assert stats.read()[KEY].requests == 3  # T0 - 600 is 10 minutes back: out
    clock.now = T0 + 9 * 60  # T0 - 540 and T0 - 60 are now out
    assert (stats.read()[KEY].requests, stats.read()[KEY].p50_ms) == (1, 4.0)
    clock.now = T0 + 10 * 60
    assert stats.read() == {}


def test_rows_already_out_of_the_window_are_not_kept(store_of):
    stats = LiveStats(store_of(clock=Clock(), window_seconds=120))
    stats.feed([row(T0 - 3600)])
    assert stats.read() == {}


def test_each_minute_keeps_its_newest_samples_and_counts_every_request(store_of):
    stats = LiveStats(store_of(clock=Clock()))
    for first, last in ((1, 400), (401, 800), (801, 1200), (1201, 1300)):  # one minute, past twice the kept
        stats.feed([row(T0, latency=ms) for ms in range(first, last + 1)])
    stats.feed([row(T0 - 60, latency=10_000)])

    found = stats.read()[KEY]
    kept = sorted([*range(1301 - SAMPLES_PER_MINUTE, 1301), 10_000])
    assert found.requests == 1301
    assert (found.p50_ms, found.p95_ms) == (statistics.median(kept), _p95(kept))


def test_read_of_some_models(store_of):
    stats = LiveStats(store_of(clock=Clock()))
    stats.feed([row(T0, model="x"), row(T0, model="y", latency=7)])
    assert set(stats.read()) == {"sim-openai/x", "sim-openai/y"}
    assert stats.read(["sim-openai/y", "sim-openai/nothing"]) == {
        "sim-openai/y": ModelStats(1, 1, 1.0, 7.0, 7.0, None, Decimal("0.001"))
    }


# --- processes -----------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from decimal import Decimal

    import django

    django.setup()
    from modelhub.models import UsageRecord
    from modelhub.stats import LiveStats, RedisStatsStore

    url, at = sys.argv[1], float(sys.argv[2])
    rows = [
        UsageRecord(created_at=datetime.fromtimestamp(at, UTC), request_id=f"child{ms}", provider="sim-openai",
                    model="m", outcome="ok", latency_ms=ms, cost_usd=Decimal("0.003"))
        for ms in (10, 20, 30)
    ]
    LiveStats(RedisStatsStore(url)).feed(rows)
    """
)


def test_two_processes_attempts_add_up_in_redis(redis_clean):
    now = time.time()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, redis_clean, str(now)],
        cwd=Path(__file__).resolve().parent.parent,
        env={**_env(), "DJANGO_SETTINGS_MODULE": "pam.settings"},
        capture_output=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr.decode()
    LiveStats(RedisStatsStore(redis_clean)).feed([row(now, latency=40), row(now, outcome="timeout", cost="0")])

    found = LiveStats(RedisStatsStore(redis_clean)).read()  # a third process's view
    assert found == {KEY: ModelStats(5, 4, 0.8, 25.0, 38.5, None, Decimal("0.010") / 5)}


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_the_embedded_default_keeps_them_in_this_process_and_redis_url_shares_them(settings, redis_url):
    settings.REDIS_URL = ""
    assert isinstance(stats_make().store, LocalStatsStore)
    settings.REDIS_URL = redis_url
    assert isinstance(stats_make().store, RedisStatsStore)


def test_the_window_and_refresh_come_from_the_settings(settings):
    settings.REDIS_URL = ""
    settings.MODELHUB = {**settings.MODELHUB, "STATS_WINDOW_SECONDS": 120, "STATS_REFRESH_SECONDS": 30}
    stats = stats_make()
    assert (stats.store.window_seconds, stats.refresh_seconds) == (120.0, 30.0)


def test_the_ledger_feeds_them_once_per_row_even_when_a_batch_is_stored_again(db, monkeypatch):
    rt = runtime()  # the ledger and the statistics of this test
    fed = []
    monkeypatch.setattr(rt.stats, "feed", lambda records: fed.extend(records))
    failing = iter([RuntimeError("database away")])

    def store(records):
        if next(failing, None) is not None:
            raise RuntimeError("database away")

    monkeypatch.setattr("modelhub.ledger.usage_store", store)
    first, second = row(time.time()), row(time.time())
    rt.ledger.submit_usage(first)
    with pytest.raises(RuntimeError):
        rt.ledger.flush()  # stored later, but fed now
    rt.ledger.submit_usage(second)
    rt.ledger.flush()
    assert fed == [first, second]


# --- the router's view ---------------------------------------------------------------


class HeldStore(LocalStatsStore):
    """Its reads wait until ``release`` is set (a slow Redis), and are counted."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.release, self.reads = threading.Event(), 0

    def read(self, keys=None):
        self.reads += 1
        self.release.wait(5)
        return super().read(keys)


def test_latest_is_a_lookup_refreshed_in_the_background():
    store = HeldStore()
    stats = LiveStats(store, refresh_seconds=3600)
    stats.feed([row(time.time(), latency=80)])

    started = time.perf_counter()
    assert stats.latest(KEY) is None  # nothing read yet; the refresh it starts waits on the store
    assert stats.latest(KEY) is None  # one refresh at a time
    assert time.perf_counter() - started < 0.05
    store.release.set()
    _wait_for(lambda: stats.table)
    assert stats.latest(KEY).p50_ms == 80.0

    stats.feed([row(time.time(), latency=120)])
    assert stats.latest(KEY).p50_ms == 80.0  # not refreshed again within refresh_seconds
    assert store.reads == 1


def test_held_figures_are_served_and_not_refreshed():
    store = HeldStore()
    stats = LiveStats(store, refresh_seconds=0)
    figures = ModelStats(10, 9, 0.9, 100.0, 200.0, None, Decimal("0.01"))
    stats.hold({KEY: figures})
    assert stats.latest(KEY) == figures
    assert store.reads == 0


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_a_redis_outage_keeps_the_last_figures_and_the_chat_does_not_wait(hub, sim, caplog):
    """Redis dies, then hangs (each call would cost 2 s): the figures read before stay, the
    failure is logged once, chat answers at once, and the ledger keeps every row."""
    server = RedisServer()
    try:
        server.start()
    except FileNotFoundError:
        pytest.skip("needs the redis-server binary")
    stats = runtime().stats = LiveStats(RedisStatsStore(server.url, timeout=2), refresh_seconds=0)
    route = hub.route("pam", [hub.model("fast", "openai"), hub.model("steady", "anthropic")])
    route.strategy = "latency"
    route.save()
    assert [hub.chat().status_code for _ in range(3)] == [200] * 3
    before = stats.read()
    assert before["sim-openai/fast"].requests == 3

    server.kill()
    with caplog.at_level(logging.WARNING, logger="modelhub.stats"):
        assert stats.read() == before
        assert stats.read() == before
    logged = [r.getMessage() for r in caplog.records if r.name == "modelhub.stats"]
    assert len(logged) == 1 and "unreadable" in logged[0]

    silent = SilentServer()
    try:
        stats.store = RedisStatsStore(silent.url, timeout=2)
        started = time.monotonic()
        response = hub.client.post(
            "/api/v1/pam/chat", {"message": "Hi"}, content_type="application/json", headers=_auth(hub)
        )
        answered = time.monotonic() - started
        assert response.status_code == 200 and answered < 1.0  # its refresh waits on Redis, not the chat
        assert stats.latest("sim-openai/fast") == before["sim-openai/fast"]
        runtime().ledger.flush()  # the writer waits for Redis once, then drops figures for a while
        started = time.monotonic()
        assert hub.chat().status_code == 200  # chat and flush
        assert time.monotonic() - started < 1.0
    finally:
        silent.close()
    assert UsageRecord.objects.filter(model="fast").count() == 5


def _auth(hub) -> dict:
    return {"Authorization": f"Bearer {hub.key}"}


# --- admin and the admin API ---------------------------------------------------------


@pytest.fixture
def answered(hub, sim):
    """Two models of route "pam": the primary fails once out of three attempts."""
    primary, fallback = hub.model("primary-m", "openai"), hub.model("fallback-m", "anthropic")
    hub.model("idle-m", "google")
    hub.route("pam", [primary, fallback])
    assert hub.chat().status_code == 200
    sim.set_fault("primary-m", status=500, times=1)
    assert hub.chat().status_code == 200
    for model in (primary, fallback):
        ModelHealth.objects.get_or_create(model=model)
    return primary, fallback


def test_the_health_page_shows_the_windows_figures(admin_client, answered):
    found = stats_read()
    primary = found["sim-openai/primary-m"]
    assert (primary.requests, primary.successes) == (2, 1)

    html = admin_client.get("/admin/modelhub/modelhealth/").content.decode()

    assert "<h2>Live statistics: the last 15 minutes, every process&#x27;s requests</h2>" in html
    for header in ("Requests", "Success rate", "Latency p50 / p95", "TTFT p50", "Cost / request"):
        assert f"<span>{header}</span>" in html
    assert '<td class="field-window_requests">2</td>' in html
    assert '<td class="field-window_success_rate">50.0%</td>' in html
    assert f'<td class="field-window_latency">{primary.p50_ms:.0f} ms / {primary.p95_ms:.0f} ms</td>' in html
    assert f'<td class="field-window_cost">{usd(primary.cost_per_request)}</td>' in html
    assert primary.cost_per_request == found["sim-anthropic/fallback-m"].cost_per_request / 2


def test_the_admin_api_gives_each_model_its_stats(admin_client, answered):
    found = stats_read()

    rows = {m["model_id"]: m for m in admin_client.get("/api/v1/admin/models/health").json()}

    primary = found["sim-openai/primary-m"]
    assert rows["primary-m"]["stats"] == {
        "window_seconds": 900,
        "requests": 2,
        "successes": 1,
        "success_rate": 0.5,
        "p50_ms": primary.p50_ms,
        "p95_ms": primary.p95_ms,
        "ttft_p50_ms": None,
        "cost_per_request": float(primary.cost_per_request),
    }
    assert rows["fallback-m"]["stats"]["requests"] == 1
    assert rows["idle-m"]["stats"] == {"window_seconds": 900, **asdict(NO_REQUESTS)}
    assert asdict(NO_REQUESTS) == {
        "requests": 0,
        "successes": 0,
        "success_rate": None,
        "p50_ms": None,
        "p95_ms": None,
        "ttft_p50_ms": None,
        "cost_per_request": None,
    }
    assert "latency_ms_avg" not in rows["primary-m"]

"""Per-key limits: allowed routes (403), requests per minute over a sliding window (429 +
Retry-After) and a daily budget in USD (429 saying so); exact across processes through
Redis; with Redis down, RPM fails open and budgets fail closed (settings)."""

import asyncio
import os
import socket
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from django.conf import settings as django_settings

from modelhub import limits
from modelhub.api.base import KeyRateThrottle
from modelhub.api.openai_views import CompletionsView
from modelhub.models import Route
from modelhub.routing.snapshot import KeySpec
from modelhub.runtime import runtime
from tests.hubserver import hub_server, live  # noqa: F401 - fixtures
from tests.hubtools import KEY_ENV

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def pam(hub):
    hub.route("pam", [hub.model("only", "openai")])
    hub.route("fast", [hub.model("quick", "google")])
    return hub


def _limit(hub, **fields):
    key = hub.key_obj
    for name, value in fields.items():
        setattr(key, name, value)
    key.save()
    return key


class Clock:
    """The counters' time, moved by the test."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


MINUTE_START = 1_800_000_000 // 60 * 60  # 0:00 of some minute
COUNTERS = [
    pytest.param(limits.LocalCounters, id="local"),
    pytest.param(
        lambda clock: limits.RedisCounters(django_settings.REDIS_URL, clock=clock),
        id="redis",
        marks=pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL"),
    ),
]


@pytest.fixture(params=COUNTERS)
def clock(request, monkeypatch):
    """A clock at 0:00 of a minute, driving this test's counters (in this process or Redis)."""
    clock = Clock(MINUTE_START)
    monkeypatch.setattr(runtime(), "counters", request.param(clock))
    return clock


def _statuses(hub, count: int) -> list[int]:
    return [hub.chat().status_code for _ in range(count)]


def test_key_limited_to_routes_gets_403_elsewhere(pam):
    _limit(pam).routes.set([Route.objects.get(name="fast")])
    pam.key_obj.save()
    assert pam.chat({"message": "Hi", "route": "fast"}).status_code == 200
    denied = pam.chat({"message": "Hi", "route": "pam"})
    assert denied.status_code == 403
    assert denied.json()["error"]["type"] == "route_not_allowed"
    assert pam.chat({"message": "Hi", "model": "only"}).status_code == 403


def test_over_rpm_is_429_with_retry_after(pam, sim):
    _limit(pam, rpm_limit=2)
    assert [pam.chat().status_code for _ in range(2)] == [200, 200]
    refused = pam.chat()
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["error"]["type"] == "rate_limit_exceeded"
    assert len(sim.calls) == 2


def test_over_budget_is_429_saying_the_budget_is_spent(pam, sim):
    _limit(pam, daily_budget_usd=Decimal("0.0001"))  # one answer costs $0.000066
    assert [pam.chat().status_code for _ in range(2)] == [200, 200]
    refused = pam.chat()
    assert refused.status_code == 429
    assert "budget" in refused.json()["error"]["message"]
    assert len(sim.calls) == 2


def test_no_double_burst_across_a_minute_boundary(pam, sim, clock):
    _limit(pam, rpm_limit=3)
    clock.now = MINUTE_START + 59
    assert _statuses(pam, 3) == [200, 200, 200]
    clock.now = MINUTE_START + 61  # a new minute, but the last 60 s already hold 3 requests
    refused = pam.chat()
    assert _statuses(pam, 2) == [429, 429]
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_exceeded"
    assert refused["Retry-After"] == "58"  # the 0:59 requests leave the window at 1:59
    clock.now = MINUTE_START + 120
    assert _statuses(pam, 4) == [200, 200, 200, 429]
    assert len(sim.calls) == 6


def test_the_window_frees_one_slot_as_each_request_ages_out(pam, clock):
    _limit(pam, rpm_limit=2)
    for second in (0, 20):
        clock.now = MINUTE_START + second
        assert pam.chat().status_code == 200
    clock.now = MINUTE_START + 59.5
    assert pam.chat()["Retry-After"] == "1"  # 0.5 s left, rounded up
    clock.now = MINUTE_START + 60  # the request of 0:00 has left, the one of 0:20 has not
    assert _statuses(pam, 2) == [200, 429]
    assert pam.chat()["Retry-After"] == "20"


def test_refused_requests_do_not_hold_the_key_out_longer(pam, clock):
    _limit(pam, rpm_limit=1)
    assert pam.chat().status_code == 200
    for second in range(1, 60, 5):  # a client retrying all minute long
        clock.now = MINUTE_START + second
        assert pam.chat().status_code == 429
    clock.now = MINUTE_START + 60
    assert pam.chat().status_code == 200


@pytest.mark.parametrize("counters", COUNTERS)
async def test_a_lowered_limit_waits_for_enough_requests_to_age_out(counters):
    """Five requests logged under a limit of 5, then the limit is 2: a slot frees when the
    fourth oldest leaves. A limit of 0 refuses everything for a minute at a time."""
    clock = Clock(MINUTE_START)
    tally = counters(clock)
    for second in range(5):
        clock.now = MINUTE_START + second
        assert await tally.admit(7, clock.now, rpm=5) == (0, 0)
    clock.now = MINUTE_START + 10
    assert await tally.admit(7, clock.now, rpm=2) == (53, 0)  # the request of 0:03 leaves at 1:03
    assert await tally.admit(7, clock.now, rpm=0) == (60, 0)
    assert await tally.admit(8, clock.now, rpm=0) == (60, 0)


def test_key_without_limits_never_touches_the_counters(pam, monkeypatch):
    class Unreachable:
        async def admit(self, *args, **kwargs):
            raise AssertionError("counted a key without limits")

        reserve = admit

    monkeypatch.setattr(runtime(), "counters", Unreachable())
    assert pam.chat().status_code == 200


@pytest.fixture
def redis_down(monkeypatch):
    """The counters point at a port where no Redis listens."""
    monkeypatch.setattr(runtime(), "counters", limits.RedisCounters("redis://127.0.0.1:1/0"))


def test_redis_down_allows_a_key_with_an_rpm_limit(pam, sim, redis_down):
    _limit(pam, rpm_limit=1)
    assert _statuses(pam, 3) == [200, 200, 200]  # fail open: the limit protects capacity


def test_redis_down_refuses_a_key_with_a_budget_with_503(pam, sim, redis_down):
    _limit(pam, rpm_limit=1000, daily_budget_usd=Decimal("10"))
    refused = pam.chat()
    assert refused.status_code == 503  # fail closed: spend that cannot be counted is not made
    assert refused.json()["error"]["type"] == "limits_unavailable"
    assert refused["Retry-After"] == str(limits.UNAVAILABLE_RETRY_AFTER)
    assert sim.calls == []


def test_redis_down_follows_the_fail_open_settings(pam, sim, redis_down, settings):
    settings.MODELHUB = {**settings.MODELHUB, "RPM_FAIL_OPEN": False, "BUDGET_FAIL_OPEN": True}
    _limit(pam, daily_budget_usd=Decimal("10"))
    assert pam.chat().status_code == 200
    _limit(pam, rpm_limit=1000)
    assert pam.chat().status_code == 503


def test_budget_reserve_fails_closed_when_redis_goes_down_after_admission(redis_down):
    """The request was admitted, then its reservation cannot be made: refused, not uncounted."""
    key = KeySpec(pk=1, name="k", is_staff=False, daily_budget_usd=Decimal("1"))
    with pytest.raises(limits.LimitExceeded) as refused:
        asyncio.run(limits.budget_reserve(key=key, worst=Decimal("0.001")))
    assert (refused.value.status, refused.value.code) == (503, "limits_unavailable")


@pytest.mark.django_db(transaction=True)
def test_limits_apply_on_the_openai_endpoint(live):
    live.route("pam", [live.model("only", "openai")])
    _limit(live, rpm_limit=1)
    with openai.OpenAI(base_url=f"{live.server.url}/v1", api_key=live.key, max_retries=0) as client:
        client.chat.completions.create(model="pam", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="pam", messages=MESSAGES)
    assert caught.value.response.headers["retry-after"]


# --- across processes -----------------------------------------------------------------

needs_shared_services = pytest.mark.skipif(
    not (os.environ.get("REDIS_URL") and os.environ.get("DATABASE_URL", "").startswith("postgres")),
    reason="needs REDIS_URL and a PostgreSQL DATABASE_URL",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(port: int) -> subprocess.Popen:
    db = django_settings.DATABASES["default"]
    env = {
        **os.environ,
        KEY_ENV: "sim-test-key",
        "REDIS_URL": django_settings.REDIS_URL,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
    }
    return subprocess.Popen(
        [
            str(ROOT / ".venv/bin/uvicorn"),
            "pam.asgi:application",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_listening(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("a hub process did not start")


@pytest.fixture
def two_hubs(live):
    ports = [_free_port(), _free_port()]
    processes = [_serve(port) for port in ports]
    try:
        for port, process in zip(ports, processes, strict=False):
            _wait_listening(port, process)
        yield [
            openai.OpenAI(base_url=f"http://127.0.0.1:{p}/v1", api_key=live.key, max_retries=0, timeout=10)
            for p in ports
        ]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


@needs_shared_services
@pytest.mark.django_db(transaction=True)
def test_rpm_holds_across_two_processes(live, two_hubs, sim):
    """The key's rate is the DRF throttle class (KeyRateThrottle) over the shared counters."""
    live.route("pam", [live.model("only", "openai")])
    _limit(live, rpm_limit=3)
    outcomes = []
    for client in [*two_hubs, *two_hubs]:
        try:
            client.chat.completions.create(model="pam", messages=MESSAGES)
            outcomes.append("ok")
        except openai.RateLimitError:
            outcomes.append("429")
    assert outcomes == ["ok", "ok", "ok", "429"]
    assert len(sim.calls) == 3
    assert KeyRateThrottle in CompletionsView.throttle_classes


@needs_shared_services
@pytest.mark.django_db(transaction=True)
def test_budget_holds_across_two_processes(live, two_hubs, sim):
    live.route("pam", [live.model("only", "anthropic")])
    _limit(live, daily_budget_usd=Decimal("0.0001"))  # one answer costs $0.000066
    first, second = two_hubs
    first.chat.completions.create(model="pam", messages=MESSAGES)
    stream = second.chat.completions.create(model="pam", messages=MESSAGES, stream=True)
    assert list(stream)
    with pytest.raises(openai.RateLimitError) as caught:
        first.chat.completions.create(model="pam", messages=MESSAGES)
    assert "budget" in caught.value.message
    assert len(sim.calls) == 2


def test_admin_creates_a_key_with_limits_and_shows_the_secret_once(admin_client, db):
    from django.urls import reverse

    from modelhub.models import ApiKey

    route = Route.objects.get(name="fast")
    response = admin_client.post(
        reverse("admin:modelhub_apikey_add"),
        {"name": "limited", "routes": [route.pk], "rpm_limit": "30", "daily_budget_usd": "2.5"},
        follow=True,
    )
    assert response.status_code == 200
    key = ApiKey.objects.get(name="limited")
    assert (key.rpm_limit, key.daily_budget_usd, list(key.routes.all())) == (30, Decimal("2.5"), [route])
    assert "Copy this key now" in response.content.decode()

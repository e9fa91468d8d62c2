"""Dependency failures: Redis stopped and PostgreSQL restarted under load. Chat keeps
answering from the routing snapshot, each limit fails open or closed as its setting says,
the ledger loses nothing and catches up, and the health endpoint says "degraded", naming
the dependency, then "ok" again.

The load tests run the hub as a uvicorn process on the test's PostgreSQL database and on a
private redis-server of their own, never on the machine's shared servers: Redis is killed
and started again on its port (it comes back empty, as a Redis without persistence does);
PostgreSQL's immediate restart is played by a proxy in front of it that resets every
connection and turns new ones away until it ends."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
from decimal import Decimal
from http.client import HTTPException

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext

from modelhub import redis_clients
from modelhub.api.views import health_status
from modelhub.models import UsageRecord
from modelhub.redis_clients import RETRY_SECONDS, LoopRedis, RedisUnavailable
from modelhub.routing.state import RoutingState
from modelhub.routing.version import RedisVersion
from modelhub.runtime import runtime_reset
from modelhub.services import api_key_create
from tests.e2e.conftest import (
    HubServer,
    database_url_of_tests,
    e2e_hub,  # noqa: F401 - fixture
    free_port,
    hub_server_start,
    needs_postgres,
)
from tests.factories import AIModelFactory, RouteFactory
from tests.netkit import TcpProxy, database_port, wait_for
from tests.routing.test_versions import current

OUTAGE_SECONDS = 2.5  # past the snapshot's maximum age in the hub processes (1 s): it is rebuilt meanwhile


class RedisServer:
    """A private redis-server without persistence on a free port; ``kill()`` and
    ``start()`` again play a crash and a restart (it comes back empty)."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_for(self._answers, timeout=10)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def _answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=0.2, socket_connect_timeout=0.2)
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        finally:
            client.close()


@pytest.fixture
def private_redis():
    if not shutil.which("redis-server"):
        pytest.skip("needs the redis-server binary")
    server = RedisServer()
    server.start()
    yield server
    server.kill()


class SilentServer:
    """Accepts connections and never answers: a hung Redis."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for end in self.accepted:
            end.close()


# --- in this process ---------------------------------------------------------------------


@pytest.mark.django_db
def test_routing_keeps_its_snapshot_while_redis_is_down_and_rebuilds_once_when_it_is_back(private_redis):
    RouteFactory(chain=[AIModelFactory()])
    redis.Redis.from_url(private_redis.url).set("modelhub:config-version", 5)
    state = RoutingState(RedisVersion(private_redis.url, config_key="modelhub:config-version", health_key="h"))
    snapshot = current(state)
    private_redis.kill()
    with CaptureQueriesContext(connection) as queries:
        assert all(current(state) is snapshot for _ in range(50))
    assert len(queries) == 0  # no reload storm: the last versions seen stand
    private_redis.start()  # empty: the config version reads 0
    wait_for(lambda: current(state) is not snapshot, timeout=5)
    rebuilt = current(state)
    with CaptureQueriesContext(connection) as queries:
        assert all(current(state) is rebuilt for _ in range(50))
    assert len(queries) == 0 and rebuilt.version == 0


def ping(redis_client, _scripts):
    return redis_client.ping()


SHORT_RETRY = 0.5


@pytest.fixture
def short_retry(monkeypatch):
    monkeypatch.setattr(redis_clients, "RETRY_SECONDS", SHORT_RETRY)


async def test_after_a_redis_failure_calls_fail_at_once_until_a_probe_finds_it_back(private_redis, short_retry):
    client = LoopRedis(private_redis.url)
    assert await client.call(ping)
    private_redis.kill()
    with pytest.raises(redis.ConnectionError):
        await client.call(ping)
    with pytest.raises(RedisUnavailable):  # not tried: it failed moments ago
        await client.call(ping)
    private_redis.start()
    await asyncio.sleep(SHORT_RETRY)
    assert await client.call(ping)  # the probe
    assert await client.call(ping)  # closed again


async def test_one_probe_at_a_time_finds_out_whether_a_hung_redis_is_back(short_retry):
    silent = SilentServer()
    try:
        client = LoopRedis(silent.url)
        with pytest.raises(redis.TimeoutError):
            await client.call(ping)
        await asyncio.sleep(SHORT_RETRY)
        probe, other = await asyncio.gather(client.call(ping), client.call(ping), return_exceptions=True)
    finally:
        silent.close()
    assert isinstance(probe, redis.TimeoutError)  # waited for the hung Redis
    assert isinstance(other, RedisUnavailable)  # did not


async def test_a_command_redis_refuses_is_not_an_outage(private_redis):
    client = LoopRedis(private_redis.url)
    with pytest.raises(redis.ResponseError):
        await client.call(lambda redis_client, _: redis_client.execute_command("NO-SUCH-COMMAND"))
    assert await client.call(ping)


@pytest.fixture
def hub(hub):
    """Route "pam" answered by one simulated model."""
    hub.route("pam", [hub.model("steady", "openai")])
    return hub


def test_a_hung_redis_costs_a_timeout_now_and_then_not_one_per_request(hub, sim, settings):
    """Redis accepts connections and never answers: every chat is answered (RPM fails
    open), and Redis is tried again once a second, not on every request."""
    hub.key_obj.rpm_limit = 1000
    hub.key_obj.save()
    silent = SilentServer()
    try:
        settings.REDIS_URL = silent.url
        runtime_reset()  # versions, counters and trial gate on the hung Redis
        statuses = [hub.chat().status_code for _ in range(30)]
    finally:
        silent.close()
    assert statuses == [200] * 30
    assert len(silent.accepted) < 15  # a client per request each for versions and counters: 60 without the pause


def test_health_names_a_failed_dependency_and_stays_200_while_chat_can_answer(client, db, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        }
    }
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["cache"].startswith("error: ")
    assert body["checks"]["database"] == "ok"


def test_health_is_503_only_when_the_database_failed_and_there_is_no_snapshot():
    broken = {"database": "error: OperationalError", "cache": "ok", "broker": "eager"}
    assert health_status(broken, routing=True) == "degraded"
    assert health_status(broken, routing=False) == "unavailable"
    assert health_status({**broken, "database": "ok", "cache": "error: X"}, routing=False) == "degraded"
    assert health_status({**broken, "database": "ok"}, routing=False) == "ok"


# --- a hub process under load --------------------------------------------------------------


class Traffic:
    """Chats sent by a few threads, one after another, until the block ends; the status of
    each is kept (0: no answer at all)."""

    def __init__(self, server: HubServer, key: str, threads: int = 4):
        self.server, self.key = server, key
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _send(self) -> None:
        while not self._stop.is_set():
            self.statuses.append(chat_status(self.server, self.key))
            time.sleep(0.01)

    def more(self, count: int, *, seconds: float = 0.0) -> None:
        """Wait until ``count`` more chats have had their answer and ``seconds`` have passed."""
        until, started = len(self.statuses) + count, time.monotonic()
        wait_for(lambda: len(self.statuses) >= until and time.monotonic() - started >= seconds)


def chat_status(server: HubServer, key: str) -> int:
    return chat(server, key)[0]


def chat(server: HubServer, key: str) -> tuple[int, dict]:
    try:
        return server.request("POST", "/api/v1/pam/chat", {"message": "Hi"}, key)
    except (OSError, HTTPException):
        return 0, {}


def health_becomes(server: HubServer, status: str) -> dict:
    """The health answer once its status is ``status``."""
    seen: dict = {}

    def reached() -> bool:
        code, body = server.request("GET", "/api/v1/health")
        seen.update(body, code=code)
        return body.get("status") == status

    wait_for(reached, timeout=30)
    return seen


def ledger_catches_up(answered: int) -> int:
    """The ledger rows, once they are as many as the chats answered (or after 30 s)."""
    try:
        wait_for(lambda: UsageRecord.objects.count() >= answered, timeout=30)
    except AssertionError:
        pass
    return UsageRecord.objects.count()


@pytest.fixture
def keys(e2e_hub) -> dict[str, str]:
    """Route "pam" on the simulator; a key with an RPM limit and one with a daily budget."""
    e2e_hub.route("pam", [e2e_hub.model("steady", "openai")])
    return {
        "rpm": api_key_create(name="rpm", rpm_limit=100_000)[1],
        "budget": api_key_create(name="budget", daily_budget_usd=Decimal("10"))[1],
    }


def hub_process(**env: str) -> HubServer:
    server = hub_server_start(
        MODELHUB_ALLOW_PRIVATE_BASE_URLS="true",  # the simulator is on loopback
        MODELHUB_SNAPSHOT_MAX_AGE_SECONDS="1",
        MODELHUB_LEDGER_FLUSH_SECONDS="0.1",
        **env,
    )
    server.wait_ready()
    return server


@needs_postgres
def test_redis_stopped_under_load(keys, private_redis, sim):
    hub = hub_process(REDIS_URL=private_redis.url)
    try:
        with Traffic(hub, keys["rpm"]) as traffic:
            before = health_becomes(hub, "ok")
            traffic.more(20, seconds=RETRY_SECONDS * 1.5)  # steady: a slow first call has been retried
            budget_before = chat_status(hub, keys["budget"])
            private_redis.kill()
            during = health_becomes(hub, "degraded")
            traffic.more(20, seconds=OUTAGE_SECONDS)
            budget_during, refusal = chat(hub, keys["budget"])
            private_redis.start()
            after = health_becomes(hub, "ok")
            traffic.more(20, seconds=RETRY_SECONDS * 1.5)  # the counters' client has tried Redis again
            budget_after = chat_status(hub, keys["budget"])
        answered = traffic.statuses.count(200) + [budget_before, budget_after].count(200)
        rows = ledger_catches_up(answered)
    finally:
        hub.stop()
    assert set(traffic.statuses) == {200}  # RPM fails open: every chat of the limited key answered
    assert (budget_before, budget_during, budget_after) == (200, 503, 200)  # the budget fails closed
    assert refusal["error"]["type"] == "limits_unavailable"
    assert before["code"] == during["code"] == after["code"] == 200
    assert during["checks"]["cache"].startswith("error") and during["checks"]["broker"].startswith("error")
    assert during["checks"]["database"] == "ok"
    assert rows == answered == len(sim.calls)


@needs_postgres
def test_postgres_restarted_under_load(keys, private_redis, sim):
    proxy = TcpProxy(database_port())
    hub = hub_process(
        DATABASE_URL=database_url_of_tests().replace(f":{database_port()}/", f":{proxy.port}/"),
        REDIS_URL=private_redis.url,
        CONN_MAX_AGE="60",  # persistent connections, which the restart breaks
    )
    try:
        with Traffic(hub, keys["rpm"]) as traffic:
            before = health_becomes(hub, "ok")
            traffic.more(20)
            with proxy.cut():
                during = health_becomes(hub, "degraded")
                traffic.more(20, seconds=OUTAGE_SECONDS)
                budget_during = chat_status(hub, keys["budget"])
            after = health_becomes(hub, "ok")
            traffic.more(20)
        answered = traffic.statuses.count(200) + (budget_during == 200)
        rows = ledger_catches_up(answered)  # the hub still runs: its writer retried, not its exit
    finally:
        hub.stop()
    assert set(traffic.statuses) == {200}
    assert budget_during == 200  # the counters are in Redis, which is up
    assert before["code"] == during["code"] == after["code"] == 200
    assert during["checks"]["database"].startswith("error") and during["checks"]["cache"] == "ok"
    assert rows == answered == len(sim.calls)

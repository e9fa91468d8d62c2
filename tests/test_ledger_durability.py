"""Ledger durability: no answered attempt is lost when a process dies. Every usage row is
spooled before it is queued, the spools of dead processes are replayed (at start-up, by the
writer thread's sweep, by the Celery task), and a replay never counts a row twice.

The headline tests run the hub as a real uvicorn process, on PostgreSQL and on SQLite, in
front of the simulated upstream, whose call log counts the completions it answered."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.apps import apps as django_apps
from django.conf import settings as django_settings
from django.db import DatabaseError
from django_celery_beat.models import PeriodicTask

from modelhub import tasks
from modelhub.ledger import Ledger, usage_line
from modelhub.models import UsageRecord
from modelhub.runtime import runtime
from tests.e2e.conftest import ROOT, HubServer, database_url_of_tests, hub_server_start, needs_postgres
from tests.factories import ApiKeyFactory, UsageRecordFactory
from tests.hubtools import KEY_ENV
from tests.netkit import TcpProxy, database_port, wait_for

MODEL, ROUTE = "durable-m", "durable"
CHATS, CONCURRENCY = 120, 10


@pytest.fixture
def spool_dir(settings, tmp_path) -> Path:
    directory = tmp_path / "spool"
    settings.MODELHUB = {**settings.MODELHUB, "SPOOL_DIR": str(directory)}
    return directory


def spooled_lines(directory: Path) -> list[bytes]:
    return [line for path in sorted(directory.glob("*.spool")) for line in path.read_bytes().splitlines()]


def dead_segment(directory: Path, content: bytes, name: str = "4242-dead") -> Path:
    """A segment as a dead process leaves it: on disk, with no lock on it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.spool"
    path.write_bytes(content)
    return path


def stored() -> list[tuple]:
    return list(UsageRecord.objects.order_by("request_id", "attempt").values_list("request_id", "attempt", "api_key"))


# The ledger in one process


@pytest.mark.django_db
def test_each_usage_row_is_spooled_when_submitted_and_dropped_once_stored(spool_dir):
    ledger = runtime().ledger
    records = UsageRecordFactory.build_batch(3)
    for record in records:
        ledger.submit_usage(record)

    assert spooled_lines(spool_dir) == [usage_line(record).rstrip(b"\n") for record in records]
    assert UsageRecord.objects.count() == 0

    assert ledger.flush() == 3
    assert UsageRecord.objects.count() == 3
    assert spooled_lines(spool_dir) == []


@pytest.mark.django_db
def test_replaying_the_same_spool_twice_stores_each_row_once(spool_dir):
    key = ApiKeyFactory()
    records = UsageRecordFactory.build_batch(3, api_key=key)
    content = b"".join(usage_line(record) for record in records)

    dead_segment(spool_dir, content)
    assert runtime().ledger.sweep() == 3
    dead_segment(spool_dir, content)  # as if its process had died between storing and emptying it
    assert runtime().ledger.sweep() == 3

    assert stored() == sorted((r.request_id, r.attempt, key.pk) for r in records)
    replayed = UsageRecord.objects.get(request_id=records[0].request_id)
    assert (replayed.cost_usd, replayed.created_at, replayed.outcome) == (
        records[0].cost_usd,
        records[0].created_at,
        records[0].outcome,
    )
    assert spooled_lines(spool_dir) == []


@pytest.mark.django_db
def test_a_torn_last_line_replays_the_complete_rows_and_skips_it(spool_dir, caplog):
    first, second, torn = UsageRecordFactory.build_batch(3)
    dead_segment(spool_dir, usage_line(first) + usage_line(second) + usage_line(torn)[:40])

    assert runtime().ledger.sweep() == 2

    assert [row[0] for row in stored()] == sorted([first.request_id, second.request_id])
    assert spooled_lines(spool_dir) == []
    assert "torn line" in caplog.text


@pytest.mark.django_db
def test_an_unreadable_spool_line_is_skipped(spool_dir, caplog):
    good = UsageRecordFactory.build()
    dead_segment(spool_dir, b'{"request_id": "no-such-shape"}\n' + b"\x00garbage\n" + usage_line(good))

    assert runtime().ledger.sweep() == 1

    assert [row[0] for row in stored()] == [good.request_id]
    assert caplog.text.count("spooled usage row skipped") == 2


@pytest.mark.django_db(transaction=True)  # the deleted key's foreign key is checked at commit
def test_a_row_whose_key_was_deleted_is_stored_without_it_beside_a_row_already_stored(spool_dir):
    already = UsageRecordFactory()
    key = ApiKeyFactory()
    orphaned = UsageRecordFactory.build(api_key_id=key.pk)
    key.delete()
    ledger = runtime().ledger
    ledger.submit_usage(UsageRecordFactory.build(request_id=already.request_id, attempt=already.attempt))
    ledger.submit_usage(orphaned)

    assert ledger.flush() == 2

    assert stored() == sorted([(already.request_id, 1, None), (orphaned.request_id, 1, None)])
    assert ledger.pending() == 0
    assert spooled_lines(spool_dir) == []


@pytest.mark.django_db
def test_a_row_the_database_refuses_does_not_hold_up_the_ledger(spool_dir):
    refused = UsageRecordFactory.build(input_tokens=-1)  # breaks the column's CHECK constraint
    fine = UsageRecordFactory.build()
    ledger = runtime().ledger
    ledger.submit_usage(refused)
    ledger.submit_usage(fine)

    assert ledger.flush() == 2

    assert [row[0] for row in stored()] == [fine.request_id]
    assert ledger.pending() == 0
    assert spooled_lines(spool_dir) == []


@pytest.mark.django_db
def test_the_celery_task_replays_a_dead_process_spool(spool_dir):
    record = UsageRecordFactory.build()
    dead_segment(spool_dir, usage_line(record))

    assert tasks.ledger_sweep.apply().get() == 1

    assert [row[0] for row in stored()] == [record.request_id]


@pytest.mark.django_db
def test_the_sweeper_has_a_default_beat_schedule_that_keeps_an_operator_edit():
    schedule = importlib.import_module("modelhub.migrations.0008_ledger_sweep_schedule")
    PeriodicTask.objects.filter(name=schedule.TASK).delete()

    schedule.schedule_create(django_apps, None)
    task = PeriodicTask.objects.get(name=schedule.TASK)
    assert (task.task, task.interval.every, task.interval.period, task.enabled) == (
        "modelhub.tasks.ledger_sweep",
        1,
        "minutes",
        True,
    )
    task.enabled = False
    task.save()
    schedule.schedule_create(django_apps, None)
    assert not PeriodicTask.objects.get(name=schedule.TASK).enabled


@pytest.mark.django_db(transaction=True)  # the start-up sweep runs on a thread of its own
def test_the_web_server_start_up_replays_a_dead_process_spool(spool_dir):
    record = UsageRecordFactory.build()
    dead_segment(spool_dir, usage_line(record))

    assert async_to_sync(lifespan_run)() == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    assert stored() == [(record.request_id, 1, None)]
    assert spooled_lines(spool_dir) == []


async def lifespan_run() -> list[str]:
    """Start the ASGI application up and shut it down; returns its answers' types."""
    from pam.asgi import application

    server = ApplicationCommunicator(application, {"type": "lifespan", "asgi": {"version": "3.0"}})
    answers = []
    for event in ("lifespan.startup", "lifespan.shutdown"):
        await server.send_input({"type": event})
        answers.append((await server.receive_output(timeout=30))["type"])
    return answers


# The hub as a real process: kill -9 under load, SIGTERM, a database outage

SETUP = """
from modelhub.models import AIModel, Provider, Route, RouteEntry
from modelhub.services import api_key_create
provider = Provider.objects.create(
    name="counting-upstream", kind="openai", base_url={base_url!r}, api_key_env={key_env!r}, timeout_seconds=60
)
model = AIModel.objects.create(provider=provider, model_id={model!r}, input_price_per_mtok=3, output_price_per_mtok=15)
RouteEntry.objects.create(route=Route.objects.create(name={route!r}), model=model, position=0)
print(api_key_create(name="durability")[1])
"""


@dataclass
class Deployment:
    """A database and spool directory that hub processes share, with route ``durable`` on
    the simulated upstream's OpenAI wire format."""

    env: dict[str, str]
    spool: Path
    ok_rows: Callable[[], list[tuple[str, int]]]
    outage: Callable[[], object]  # a context manager: the database is unreachable inside it
    close: Callable[[], None] = lambda: None
    key: str = ""

    def manage(self, *args: str) -> str:
        command = [str(ROOT / ".venv" / "bin" / "python"), "manage.py", *args]
        environ = {**os.environ, **self.env}
        return subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, check=True).stdout

    def hub_start(self, **env: str) -> HubServer:
        server = hub_server_start(**self.env, **env)
        server.wait_ready()
        return server

    def chat(self, server: HubServer, n: int) -> str | None:
        """The request id of chat ``n``'s answer, or None if it got none."""
        try:
            status, body = server.request(
                "POST", "/api/v1/pam/chat", {"message": f"chat-{n}", "route": ROUTE}, self.key
            )
        except (OSError, HTTPException):
            return None
        return body["request_id"] if status == 200 else None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_postgres)])
def deployment(request, tmp_path, transactional_db, sim, simulator) -> Deployment:
    made = (_sqlite_deployment if request.param == "sqlite" else _postgres_deployment)(tmp_path)
    if request.param == "sqlite":
        made.manage("migrate", "-v0")
    setup = SETUP.format(base_url=simulator.base_url("openai"), key_env=KEY_ENV, model=MODEL, route=ROUTE)
    made.key = made.manage("shell", "-c", setup).strip().splitlines()[-1]
    yield made
    sim.release_hangs()
    made.close()


def _sqlite_deployment(tmp_path: Path) -> Deployment:
    """The embedded default on a database file (the spool beside it, its default place)."""
    database = tmp_path / "hub.sqlite3"

    def ok_rows():
        with sqlite3.connect(database) as connection:
            query = "SELECT request_id, attempt FROM modelhub_usagerecord WHERE model = ? AND outcome = 'ok'"
            return connection.execute(query, (MODEL,)).fetchall()

    # A lock waited on for over a second fails the write: an outage, not a wait.
    env = {
        "DATABASE_URL": f"sqlite:///{database}?timeout=1",
        "REDIS_URL": "",
        "MODELHUB_SPOOL_DIR": "",  # the default: beside the database file
        "MODELHUB_ALLOW_PRIVATE_BASE_URLS": "true",
    }
    return Deployment(env, Path(f"{database}.modelhub-spool"), ok_rows, lambda: sqlite_locked(database))


def _postgres_deployment(tmp_path: Path) -> Deployment:
    """The test's PostgreSQL database; the hub reaches it through a proxy that can be cut."""
    proxy = TcpProxy(database_port())

    def ok_rows():
        return list(UsageRecord.objects.filter(model=MODEL, outcome="ok").values_list("request_id", "attempt"))

    env = {
        "DATABASE_URL": database_url_of_tests().replace(f":{database_port()}/", f":{proxy.port}/"),
        "REDIS_URL": django_settings.REDIS_URL or "",
        "MODELHUB_SPOOL_DIR": str(tmp_path / "spool"),
        "MODELHUB_ALLOW_PRIVATE_BASE_URLS": "true",
    }
    return Deployment(env, tmp_path / "spool", ok_rows, proxy.cut, proxy.close)


def upstream_answered(sim) -> set[str]:
    """The chats the upstream answered, by their message."""
    return {call.body["messages"][-1]["content"] for call in sim.calls_for(MODEL) if call.status == 200}


def upstream_waiting(sim) -> int:
    return sum(1 for call in sim.calls_for(MODEL) if call.status == 0)


def test_kill_9_under_load_loses_no_answered_attempt(deployment, sim):
    """120 chats, 10 at a time, with a writer that never flushes in time: once the upstream
    has answered 60, it holds every further call, and when each answer it gave has reached
    its client the hub is killed with -9 (so "answered" is exact: no answer is on its way
    between the upstream and the hub). Not one row was stored; a new hub process replays the
    dead one's spool at start-up, and the ledger then holds one ok row for each call the
    upstream answered, under the request id its client received."""
    hub = deployment.hub_start(MODELHUB_LEDGER_FLUSH_SECONDS="3600")
    answers = kill_9_mid_load(deployment, hub, sim, lambda: True)

    assert deployment.ok_rows() == []
    assert len(spooled_lines(deployment.spool)) == len(answers)
    deployment.hub_start().stop()

    assert sorted(deployment.ok_rows()) == sorted((request_id, 1) for request_id in answers.values())
    assert spooled_lines(deployment.spool) == []


def test_kill_9_with_some_rows_stored_replays_the_rest_once(deployment, sim):
    """The same with the default flush interval: the upstream holds its calls once some
    rows are stored (their spool segment emptied, or not yet) and others are only spooled;
    the replay stores the rest, and no row twice."""
    hub = deployment.hub_start()
    answers = kill_9_mid_load(deployment, hub, sim, lambda: bool(deployment.ok_rows()), chats=600)

    assert deployment.ok_rows()
    deployment.hub_start().stop()

    assert sorted(deployment.ok_rows()) == sorted((request_id, 1) for request_id in answers.values())
    assert spooled_lines(deployment.spool) == []


def kill_9_mid_load(
    deployment: Deployment, hub: HubServer, sim, ready: Callable[[], bool], chats: int = CHATS
) -> dict[str, str]:
    """Send ``chats`` chats, CONCURRENCY at a time; once the upstream has answered CHATS / 2
    (and ``ready()``), hold its further calls, let every answer reach its client, and kill
    the hub with SIGKILL. Returns the answers its clients received (message -> request id):
    exactly the calls the upstream answered."""
    answers: dict[str, str] = {}

    def one(n: int) -> None:
        request_id = deployment.chat(hub, n)
        if request_id is not None:
            answers[f"chat-{n}"] = request_id

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for n in range(chats):
            pool.submit(one, n)
        wait_for(lambda: len(upstream_answered(sim)) >= CHATS // 2 and ready())
        sim.set_fault(MODEL, hang=True)
        wait_for(lambda: upstream_waiting(sim) == CONCURRENCY and len(answers) == len(upstream_answered(sim)))
        hub.process.send_signal(signal.SIGKILL)
        hub.process.wait()
    assert set(answers) == upstream_answered(sim)
    assert CHATS // 2 <= len(answers) < chats
    return answers


def test_sigterm_stores_every_queued_row_and_leaves_no_spool(deployment):
    hub = deployment.hub_start(MODELHUB_LEDGER_FLUSH_SECONDS="3600")
    request_ids = [hub.chat(deployment.key, ROUTE)["request_id"] for _ in range(20)]

    hub.stop()  # SIGTERM: uvicorn's lifespan shut-down flushes the ledger
    assert sorted(deployment.ok_rows()) == sorted((request_id, 1) for request_id in request_ids)
    assert spooled_lines(deployment.spool) == []


def test_a_database_outage_keeps_rows_spooled_and_stores_them_once_it_is_back(deployment):
    hub = deployment.hub_start()
    try:
        first = hub.chat(deployment.key, ROUTE)["request_id"]
        wait_for(lambda: deployment.ok_rows() == [(first, 1)])
        with deployment.outage():
            during = [hub.chat(deployment.key, ROUTE)["request_id"] for _ in range(20)]  # no database needed
            time.sleep(2.5)  # flushes fail meanwhile
            assert len(spooled_lines(deployment.spool)) == len(during)  # not stored, not lost
        wait_for(lambda: len(deployment.ok_rows()) == 21)
        wait_for(lambda: spooled_lines(deployment.spool) == [])
    finally:
        hub.stop()
    assert sorted(deployment.ok_rows()) == sorted((request_id, 1) for request_id in [first, *during])


@contextlib.contextmanager
def sqlite_locked(database: Path):
    """A SQLite outage: another connection holds the database's exclusive lock."""
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


def test_a_failing_writer_logs_one_traceback_then_reminders_then_its_recovery(db, caplog):
    """During a database outage the writer retries four times a second: the log gets the
    first failure's traceback, not one per retry, and a line when writes work again."""
    ledger = Ledger()

    def flush():
        raise DatabaseError("the database system is starting up")

    def flush_ok():
        return 0

    with caplog.at_level(logging.WARNING, logger="modelhub.ledger"):
        for _ in range(20):
            ledger._step(flush)
        ledger._step(flush_ok)
    failures = [r for r in caplog.records if "failed" in r.getMessage() or "still failing" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert "work again" in caplog.records[-1].getMessage()

"""Health travels apart from configuration: a health change reloads the health rows into
every worker's board, a configuration change rebuilds every worker's snapshot. Both
versions are shared through Redis, or without Redis through a file every process stats."""

import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from modelhub import services
from modelhub.ledger import health_store
from modelhub.providers.base import ErrorKind, ProviderError
from modelhub.routing import state as state_module
from modelhub.routing import version
from modelhub.routing.health import COOLING_DOWN, HEALTHY, Health, health_record
from modelhub.routing.state import RoutingState
from modelhub.routing.version import FileVersion, RedisVersion, SharedReads, Versions, version_store_make
from modelhub.runtime import runtime, runtime_reset
from tests.factories import AIModelFactory, ModelHealthFactory, RouteFactory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["file", "redis"])
def shared(request, settings, tmp_path):
    """This test's own shared versions, in a file under tmp_path or under fresh Redis keys;
    ``runtime()`` and every worker made by ``worker()`` read and bump the same ones."""
    if request.param == "file":
        settings.REDIS_URL = ""
        settings.MODELHUB = {**settings.MODELHUB, "VERSION_FILE": str(tmp_path / "shared-versions")}
    else:
        if not settings.REDIS_URL:
            pytest.skip("needs REDIS_URL")
        prefix = f"modelhub-test:{uuid.uuid4().hex}"
        settings.MODELHUB = {
            **settings.MODELHUB,
            "VERSION_KEY": f"{prefix}:config",
            "HEALTH_VERSION_KEY": f"{prefix}:health",
        }
    runtime_reset()
    yield request.param
    if request.param == "redis":
        runtime().versions._sync_client().delete(*runtime().versions.keys)


def worker() -> RoutingState:
    """Another worker: its own routing state and its own client of the shared versions."""
    return RoutingState(version_store_make())


def current(state: RoutingState):
    return async_to_sync(state.current)()


@pytest.fixture
def builds(monkeypatch) -> list[int]:
    """The config version of every snapshot build, in every worker."""
    built, build = [], state_module.snapshot_build

    def counted(*, version):
        built.append(version)
        return build(version=version)

    monkeypatch.setattr(state_module, "snapshot_build", counted)
    return built


@pytest.fixture
def model(db):
    model = AIModelFactory()
    RouteFactory(chain=[model])
    return model


def fail(spec) -> None:
    """An attempt of this worker failed: the breaker trips and the ledger stores the row."""
    health_record(spec, ProviderError(ErrorKind.OVERLOADED, "overloaded", status=529))
    runtime().ledger.flush()


def test_a_cooldown_reaches_another_worker_without_a_snapshot_rebuild(shared, model, builds):
    other = worker()
    snapshot = current(other)
    fail(current(runtime().routing).models[model.model_id])
    with CaptureQueriesContext(connection) as queries:
        assert current(other) is snapshot
    assert other.board.get(model.pk).state == COOLING_DOWN
    assert len(builds) == 2  # one per worker, both before the failure
    assert len(queries) == 1  # the health rows, nothing else


def test_a_worker_with_no_change_makes_no_query(shared, model, builds):
    other = worker()
    snapshot = current(other)
    with CaptureQueriesContext(connection) as queries:
        assert current(other) is snapshot
    assert len(queries) == 0


def test_a_configuration_change_rebuilds_the_snapshot(shared, model, builds):
    other = worker()
    snapshot = current(other)
    model.display_name = "renamed"
    model.save()
    rebuilt = current(other)
    assert rebuilt is not snapshot
    assert rebuilt.models[model.model_id].display_name == "renamed"
    assert len(builds) == 2


def test_a_model_health_save_bumps_only_the_health_version(shared, model):
    before = runtime().versions.get()
    ModelHealthFactory(model=model, cooling_down=True)
    after = runtime().versions.get()
    assert after.config == before.config and after.health > before.health


def test_a_health_reset_reaches_another_worker_as_a_health_change(shared, model, builds):
    other = worker()
    fail(current(runtime().routing).models[model.model_id])
    snapshot = current(other)
    assert other.board.get(model.pk).state == COOLING_DOWN
    services.health_reset(models=[model])
    assert current(other) is snapshot
    assert (other.board.get(model.pk).state, other.board.get(model.pk).cooldown_until) == (HEALTHY, 0.0)


def test_a_worker_keeps_its_own_newer_health_over_an_older_row(shared, model):
    other = worker()
    current(other)
    health_store(model_pk=model.pk, health=Health(state=COOLING_DOWN, cooldown_until=4e9, changed_at=1.0))
    mine = Health(changed_at=4e9)  # changed after the row was stored
    other.board.set(model.pk, mine)
    current(other)
    assert other.board.get(model.pk) is mine


# The version file, without Redis.


def test_an_unchanged_file_is_stat_not_read(tmp_path):
    path = tmp_path / "versions"
    store = FileVersion(path)
    store.bump_config()
    assert store.get() == Versions(1, 0)
    before = os.stat(path)
    with open(path, "r+") as handle:  # same inode, size and mtime: only a read would notice
        handle.write("7 7\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert [store.get(), store.get()] == [Versions(1, 0)] * 2
    assert FileVersion(path).get() == Versions(7, 7)  # a fresh reader does read it


def test_two_bumps_within_one_clock_tick_are_both_seen(tmp_path, monkeypatch):
    monkeypatch.setattr(version.time, "time_ns", lambda: 1_700_000_000_000_000_000)
    writer, reader = FileVersion(tmp_path / "versions"), FileVersion(tmp_path / "versions")
    seen = []
    for _ in range(3):
        writer.bump_health()
        seen.append(reader.get())
    assert seen == [Versions(0, 1), Versions(0, 2), Versions(0, 3)]


def test_a_bump_from_another_process_is_seen_on_the_next_read(tmp_path):
    path = tmp_path / "versions"
    store = FileVersion(path)
    assert store.get() == Versions(0, 0)
    _in_another_process(f"FileVersion({str(path)!r}).bump_health()")
    assert store.get() == Versions(0, 1)


def test_processes_bumping_at_once_lose_no_bump(tmp_path):
    path = tmp_path / "versions"
    snippet = f"store = FileVersion({str(path)!r})\nfor _ in range(50): store.bump_config()"
    processes = [_start_in_another_process(snippet) for _ in range(4)]
    assert [p.wait(timeout=60) for p in processes] == [0] * 4
    assert FileVersion(path).get() == Versions(200, 0)


def _start_in_another_process(snippet: str) -> subprocess.Popen:
    code = f"from modelhub.routing.version import FileVersion\n{snippet}"
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)


def _in_another_process(snippet: str) -> None:
    assert _start_in_another_process(snippet).wait(timeout=60) == 0


def test_an_unwritable_version_file_logs_and_routes_on(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    store = FileVersion(blocker / "versions")
    with caplog.at_level(logging.ERROR, logger="modelhub.routing"):
        store.bump_config()
    assert store.get() == Versions(0, 0)
    assert "version bump" in caplog.text


def test_the_version_file_sits_beside_a_sqlite_database(tmp_path):
    database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    assert version.version_file_default(database=database) == tmp_path / "db.sqlite3.modelhub-version"


def test_other_databases_share_a_version_file_in_the_temporary_directory():
    database = {"ENGINE": "django.db.backends.postgresql", "NAME": "hub", "HOST": "db", "PORT": 5432}
    path = version.version_file_default(database=database)
    assert path.parent == Path(tempfile.gettempdir())
    assert path == version.version_file_default(database=dict(database))  # every process alike
    in_memory = {"ENGINE": "django.db.backends.sqlite3", "NAME": "file:memorydb_default?mode=memory&cache=shared"}
    assert version.version_file_default(database=in_memory).parent == Path(tempfile.gettempdir())


def test_the_setting_names_the_version_file(settings, tmp_path):
    settings.MODELHUB = {**settings.MODELHUB, "VERSION_FILE": str(tmp_path / "v")}
    assert version.version_file_path() == tmp_path / "v"


# Redis.


def test_redis_versions_are_read_in_one_round_trip(settings, monkeypatch):
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    prefix = f"modelhub-test:{uuid.uuid4().hex}"
    store = RedisVersion(settings.REDIS_URL, config_key=f"{prefix}:c", health_key=f"{prefix}:h")
    commands = []
    client = store._sync_client()
    monkeypatch.setattr(
        client,
        "execute_command",
        lambda *args, _run=client.execute_command, **kw: commands.append(args[0]) or _run(*args, **kw),
    )
    RedisVersion(settings.REDIS_URL, config_key=f"{prefix}:c", health_key=f"{prefix}:h").bump_health()
    try:
        assert store.get() == Versions(0, 1)
        assert commands == ["MGET"]
    finally:
        client.delete(f"{prefix}:c", f"{prefix}:h")


def test_redis_down_routes_on_the_last_versions_seen_and_warns_once(caplog):
    store = RedisVersion("redis://127.0.0.1:1/0", config_key="c", health_key="h")
    store.last = Versions(7, 3)
    with caplog.at_level(logging.WARNING, logger="modelhub.routing"):
        seen = [store.get(), async_to_sync(store.aget)(), store.get()]
    assert seen == [Versions(7, 3)] * 3
    assert caplog.text.count("routing versions unavailable") == 1


def test_a_failed_reload_is_tried_again_a_second_later_not_on_every_request(shared, model, monkeypatch, caplog):
    """The database is down and the snapshot is due for a reload (max age 0): requests
    route on the previous snapshot, one reload is tried, one line logged."""
    state = worker()
    snapshot = current(state)
    tries = []

    def database_down(*, version):
        tries.append(version)
        raise OperationalError("the database system is starting up")

    monkeypatch.setattr(state_module, "snapshot_build", database_down)
    monkeypatch.setitem(settings.MODELHUB, "SNAPSHOT_MAX_AGE_SECONDS", 0)
    with caplog.at_level(logging.WARNING, logger="modelhub.routing"):
        assert all(current(state) is snapshot for _ in range(20))
    assert len(tries) == 1
    assert caplog.text.count("reload failed") == 1


# -- SharedReads: one Redis read for a burst, never one that began before a reader asked --


class _SlowCounter:
    """A read that takes a while and returns how many reads had begun."""

    def __init__(self, fail: bool = False):
        self.begun, self.fail = 0, fail

    async def read(self):
        self.begun += 1
        seen = self.begun
        await asyncio.sleep(0.02)
        if self.fail:
            raise ConnectionError("redis down")
        return seen


async def test_a_burst_of_readers_shares_two_reads():
    counter = _SlowCounter()
    reads = SharedReads(counter.read)
    first = asyncio.ensure_future(reads.get())
    await asyncio.sleep(0.005)  # the first read is under way: the rest wait for the next one
    rest = await asyncio.gather(*(reads.get() for _ in range(200)))
    assert await first == 1
    assert set(rest) == {2} and counter.begun == 2


async def test_a_reader_is_served_by_a_read_that_began_after_it_asked():
    counter = _SlowCounter()
    reads = SharedReads(counter.read)
    early = asyncio.ensure_future(reads.get())
    await asyncio.sleep(0.01)  # read 1 began before the late reader asked
    late = await reads.get()
    assert (await early, late) == (1, 2)
    assert await reads.get() == 3  # idle again: a new read at once


async def test_a_reader_that_leaves_does_not_cancel_the_read_of_the_others():
    counter = _SlowCounter()
    reads = SharedReads(counter.read)
    leaving, staying = asyncio.ensure_future(reads.get()), asyncio.ensure_future(reads.get())
    await asyncio.sleep(0.005)
    leaving.cancel()
    assert await staying == 1


async def test_a_failed_read_fails_each_of_its_readers_and_the_next_read_is_tried_again():
    counter = _SlowCounter(fail=True)
    reads = SharedReads(counter.read)
    outcomes = await asyncio.gather(*(reads.get() for _ in range(5)), return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes) and counter.begun == 1
    counter.fail = False
    assert await reads.get() == 2


async def test_readers_that_arrive_while_a_read_is_cancelled_are_served_by_a_later_read():
    counter = _SlowCounter()
    reads = SharedReads(counter.read)
    first = asyncio.ensure_future(reads.get())
    await asyncio.sleep(0.005)
    waiting = asyncio.ensure_future(reads.get())  # for the next read
    await asyncio.sleep(0)
    reads._task.cancel()  # the read task dies (as when its loop is closing)
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(asyncio.CancelledError):
        await waiting  # told, not left waiting for ever
    assert await reads.get() == 2  # and the next reader starts a read again


# -- A reload met by a burst: everyone waits for the one reload, and goes on at once --


class _Store:
    """Shared versions as a test sets them."""

    def __init__(self):
        self.seen = Versions(1, 0)

    async def aget(self) -> Versions:
        return self.seen


class _Snapshot:
    def __init__(self, version: int):
        self.version, self.health = version, {}

    def stale(self, version: int, now: float) -> bool:
        return version != self.version


def _turns():
    """A counter of event-loop turns: a callback that reschedules itself once a turn."""
    loop, count = asyncio.get_running_loop(), [0]

    def tick():
        count[0] += 1
        handle[0] = loop.call_soon(tick)

    handle = [loop.call_soon(tick)]
    return count, handle


async def test_a_burst_that_meets_a_reload_goes_on_together_after_one_build(monkeypatch):
    """200 requests find the configuration changed: one build, and once it is installed
    all of them have their snapshot within a loop turn or two. (Behind an asyncio.Lock
    they went on one a turn: 200 turns, with the streams already running relayed in each.)"""
    built = []

    def slow_build(*, version):
        built.append(version)
        import time

        time.sleep(0.05)
        return _Snapshot(version)

    monkeypatch.setattr(state_module, "snapshot_build", slow_build)
    monkeypatch.setattr(state_module, "fresh_connections", lambda build: build)  # no database here
    store = _Store()
    state = RoutingState(store)
    assert (await state.current()).version == 1
    store.seen = Versions(2, 0)
    count, handle = _turns()

    async def request():
        snapshot = await state.current()
        return snapshot.version, count[0]

    try:
        answers = await asyncio.gather(*(request() for _ in range(200)))
    finally:
        handle[0].cancel()
    assert built == [1, 2]
    assert {version for version, _ in answers} == {2}
    turns = [turn for _, turn in answers]
    assert max(turns) - min(turns) <= 2, (min(turns), max(turns))


async def test_a_failed_first_build_fails_every_waiting_request_once(monkeypatch):
    """No snapshot yet and the database down: the requests waiting for that build all get
    its error, and the next request tries again."""
    built = []

    def failing_build(*, version):
        built.append(version)
        raise OperationalError("the database system is starting up")

    monkeypatch.setattr(state_module, "snapshot_build", failing_build)
    monkeypatch.setattr(state_module, "fresh_connections", lambda build: build)  # no database here
    state = RoutingState(_Store())
    outcomes = await asyncio.gather(*(state.current() for _ in range(50)), return_exceptions=True)
    assert all(isinstance(outcome, OperationalError) for outcome in outcomes)
    assert built == [1]
    with pytest.raises(OperationalError):
        await state.current()
    assert built == [1, 1]


@pytest.mark.timeout(20, method="signal")  # the failure this guards against never yields to the loop
async def test_a_request_that_meets_a_reload_just_ended_does_not_wait_on_it():
    """A health reload ends, and in the same loop turn a request arrives that has read a
    newer health version already: it reloads again (the ended reload's bookkeeping runs a
    turn later; waiting on that reload would spin the loop for ever)."""
    store = _Store()
    state = RoutingState(store)
    state._install(_Snapshot(1), health_version=0)
    gate = asyncio.get_running_loop().create_future()
    reloads = []

    async def health_reload(version):
        reloads.append(version)
        state._merge_health({}, health_version=version)
        store.seen = Versions(1, version + 1)  # meanwhile another worker's failure moved it on
        if not gate.done():
            gate.set_result(None)  # wakes the late request in the turn this reload ends

    state._reload_health = health_reload
    store.seen = Versions(1, 1)

    async def late():
        await gate
        assert state._running[asyncio.get_running_loop()].done()  # ended, its bookkeeping not yet run
        return await state.current()

    first, second = await asyncio.gather(state.current(), late())
    assert first.version == second.version == 1
    assert reloads == [1, 2]


async def test_after_a_failed_reload_the_waiting_requests_route_on_what_the_worker_has(monkeypatch):
    """The configuration moved and the database fails the rebuild while 50 requests wait
    for it: one build is tried, and all 50 go on with the snapshot this worker had (not
    one failing rebuild each, in turn)."""
    built = []

    def failing_build(*, version):
        built.append(version)
        raise OperationalError("the database system is starting up")

    monkeypatch.setattr(state_module, "fresh_connections", lambda build: build)  # no database here
    store = _Store()
    state = RoutingState(store)
    state._install(_Snapshot(1), health_version=0)
    monkeypatch.setattr(state_module, "snapshot_build", failing_build)
    store.seen = Versions(2, 0)
    snapshots = await asyncio.gather(*(state.current() for _ in range(50)))
    assert built == [2]
    assert {snapshot.version for snapshot in snapshots} == {1}

import os
import shutil
import tempfile

import pytest


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Under SQLite (the embedded default), the test database is a file in WAL mode with a
    busy timeout, not Django's shared-cache in-memory database: there, a thread that reads
    a table another thread's connection is writing fails at once with "database table is
    locked" (shared-cache table locks ignore the busy timeout), and the ledger, the rollout
    worker and the ASGI preload all have threads of their own."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if not database["ENGINE"].endswith("sqlite3"):
        yield
        return
    before = {"TEST": dict(database.get("TEST", {})), "OPTIONS": dict(database.get("OPTIONS", {}))}
    folder = tempfile.mkdtemp(prefix="modelhub-test-db-")
    database["TEST"] = {**before["TEST"], "NAME": os.path.join(folder, "test.sqlite3")}
    database["OPTIONS"] = {
        **before["OPTIONS"],
        "timeout": 30,  # seconds a connection waits for another's write to end
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF",
    }
    yield
    database.update(before)  # a connection after the session gets the project's own database as it was
    shutil.rmtree(folder, ignore_errors=True)  # the database, its WAL and shared-memory files


@pytest.fixture(scope="session", autouse=True)
def _one_iteration_password_hashes():
    """Passwords made in this process are hashed once, not 1,000,000 times (tests/hashers.py)."""
    from django.conf import settings
    from django.test import override_settings

    with override_settings(
        PASSWORD_HASHERS=["tests.hashers.OneIterationPBKDF2PasswordHasher", *settings.PASSWORD_HASHERS]
    ):
        yield


@pytest.fixture(scope="session")
def simulator():
    """The built-in simulated upstream, served over real HTTP on a loopback port."""
    from modelhub.simulator.server import SimulatorServer

    server = SimulatorServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sim(simulator):
    """The simulator's state, reset around each test (faults and call log)."""
    simulator.sim.reset()
    yield simulator.sim
    simulator.sim.reset()


@pytest.fixture
def hub(db, sim, simulator, client, monkeypatch):
    """The test's view of the hub: builds providers, models and routes on the simulator, and
    calls the hub's endpoints with a key of its own."""
    from tests.hubtools import KEY_ENV, Hub

    monkeypatch.setenv(KEY_ENV, "sim-test-key")
    return Hub(simulator, client)


@pytest.fixture(autouse=True)
def _runtime_fresh(settings, tmp_path):
    """Each test starts with a fresh runtime (no cached snapshot, health or counters) and
    writes its ledger inside its own transaction (the test calls
    ``runtime().ledger.flush()``) instead of from a thread, spooling its rows in a
    directory of its own (not in var/, where a hub started by a later test would replay them)."""
    from modelhub.runtime import runtime_reset

    settings.MODELHUB = {
        **settings.MODELHUB,
        "LEDGER_BACKGROUND": False,
        "ROLLOUT_BACKGROUND": False,
        "SPOOL_DIR": str(tmp_path / "spool"),
    }
    _limit_counters_clear(settings.REDIS_URL)
    runtime_reset()
    yield
    runtime_reset()


def _limit_counters_clear(redis_url: str) -> None:
    """Per-key counters and live model statistics in Redis outlive a test, and a flushed
    database hands the next test's key the same primary key (its models the same names)."""
    if not redis_url:
        return
    import redis

    from modelhub.limits import PREFIX
    from modelhub.stats import PREFIX as STATS_PREFIX

    client = redis.Redis.from_url(redis_url)
    keys = [key for prefix in (PREFIX, STATS_PREFIX) for key in client.scan_iter(f"{prefix}*")]
    if keys:
        client.delete(*keys)

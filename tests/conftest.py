import pytest


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

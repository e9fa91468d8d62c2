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


@pytest.fixture(autouse=True)
def _runtime_fresh(settings):
    """Each test starts with a fresh runtime (no cached snapshot, health or counters) and
    writes its ledger inside its own transaction (the test calls
    ``runtime().ledger.flush()``) instead of from a thread."""
    from modelhub.runtime import runtime_reset

    settings.MODELHUB = {**settings.MODELHUB, "LEDGER_BACKGROUND": False}
    runtime_reset()
    yield
    runtime_reset()

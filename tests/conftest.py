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
def _routing_fresh(settings):
    """Each test starts with no cached snapshot or health, and writes its ledger inside its
    own transaction (the test calls ``ledger().flush()``) instead of from a thread."""
    from modelhub import ledger as ledger_module
    from modelhub.routing import state as state_module

    settings.MODELHUB = {**settings.MODELHUB, "LEDGER_BACKGROUND": False}
    state_module._state = None
    ledger_module._ledger = None
    yield
    state_module._state = None
    ledger_module._ledger = None

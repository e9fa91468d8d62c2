import pytest

from tests.hubtools import KEY_ENV, Hub


@pytest.fixture
def hub(db, sim, simulator, client, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sim-test-key")
    return Hub(simulator, client)

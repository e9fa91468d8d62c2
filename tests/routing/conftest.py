import pytest

from tests.hubtools import KEY_ENV, Hub


@pytest.fixture(autouse=True)
def _version_file_apart(settings, tmp_path):
    """Without Redis, each test's versions live in its own file, not in the one that every
    test run on this machine would share."""
    settings.MODELHUB = {**settings.MODELHUB, "VERSION_FILE": str(tmp_path / "versions")}


@pytest.fixture
def hub(db, sim, simulator, client, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sim-test-key")
    return Hub(simulator, client)

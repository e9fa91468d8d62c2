import pytest


@pytest.fixture(autouse=True)
def _version_file_apart(settings, tmp_path):
    """Without Redis, each test's versions live in its own file, not in the one that every
    test run on this machine would share."""
    settings.MODELHUB = {**settings.MODELHUB, "VERSION_FILE": str(tmp_path / "versions")}

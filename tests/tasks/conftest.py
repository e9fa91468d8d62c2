import os
import uuid

import pytest
from django.db import connection

from modelhub import probes
from modelhub.models import Route

needs_redis = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (a real Redis)")


@pytest.fixture(autouse=True)
def _fresh_probe_locks(monkeypatch):
    """Locks live in the shared cache (Redis in CI), which outlives a test."""
    monkeypatch.setattr(probes, "LOCK_PREFIX", f"test-probe-lock:{uuid.uuid4().hex}:")


@pytest.fixture
def hub(hub):
    """Providers of the four kinds on the simulator; the seeded catalog's routes switched
    off, so that a probe round covers only what the test builds."""
    Route.objects.update(enabled=False)
    return hub


@pytest.fixture
def postgres_only(db):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (row locks)")

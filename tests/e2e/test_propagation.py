"""A change made through one server process is obeyed by the very next request to another:
two real uvicorn processes on one PostgreSQL, sharing the versions through Redis or, without
Redis, through the version file."""

import statistics
import time

import pytest

from modelhub.models import ModelHealth
from tests.e2e.conftest import needs_postgres, needs_redis, servers_running
from tests.factories import ApiKeyFactory

pytestmark = [needs_postgres, pytest.mark.django_db(transaction=True)]
STAFF_KEY = "pam_e2e-staff-key"
FLIPS = 5


@pytest.fixture
def chain(e2e_hub, django_user_model):
    staff = django_user_model.objects.create_user("e2e-ops", is_staff=True)
    ApiKeyFactory(secret=STAFF_KEY, user=staff)
    models = [
        e2e_hub.model("primary-m", "anthropic"),
        e2e_hub.model("fallback-m", "google"),
        e2e_hub.model("spare-m", "openai"),
    ]
    e2e_hub.route("pam", models[:2])
    return e2e_hub


@pytest.fixture(params=[pytest.param("redis", marks=needs_redis), "version file"])
def hub_servers(request, transactional_db):
    """Two servers, stopped before the database is flushed."""
    env = {} if request.param == "redis" else {"REDIS_URL": ""}
    with servers_running(**env) as servers:
        yield servers


def set_primary(server, model_id):
    status, body = server.request("POST", "/api/v1/admin/models/set-primary", {"model_id": model_id}, STAFF_KEY)
    assert status == 200, body


@needs_redis
@pytest.mark.parametrize("hub_servers", ["redis"], indirect=True)  # the reload below crosses the file too
def test_set_primary_through_a_is_obeyed_by_the_next_request_to_b(chain, hub_servers, capsys):
    a, b = hub_servers
    assert b.chat(chain.key)["model"] == "primary-m"  # B's snapshot is warm before the change
    delays = []
    for flip in range(FLIPS):
        target = ("spare-m", "primary-m")[flip % 2]
        started = time.perf_counter()
        set_primary(a, target)
        body = b.chat(chain.key)
        delays.append((time.perf_counter() - started) * 1000)
        assert (body["model"], body["source"]) == (target, "primary")
    with capsys.disabled():
        print(
            f"\nchange through A -> first answer under it from B (ms, {FLIPS} flips): "
            f"median {statistics.median(delays):.1f}, min {min(delays):.1f}, max {max(delays):.1f}"
        )


def test_a_cooldown_set_by_one_process_is_obeyed_by_the_other(chain, hub_servers, sim):
    a, b = hub_servers
    assert b.chat(chain.key)["model"] == "primary-m"
    sim.set_fault("primary-m", status=500, times=1)  # fails once; would answer again after
    assert a.chat(chain.key)["model"] == "fallback-m"
    deadline = time.monotonic() + 10
    while not ModelHealth.objects.filter(model__model_id="primary-m", state="cooling_down").exists():
        assert time.monotonic() < deadline, "process A never stored the cooldown"
        time.sleep(0.05)
    body = b.chat(chain.key)
    assert (body["model"], body["source"]) == ("fallback-m", "fallback_1")


def test_a_forced_reload_through_b_ends_the_cooldown_in_a(chain, hub_servers, sim):
    a, b = hub_servers
    sim.set_fault("primary-m", status=500, times=1)
    assert a.chat(chain.key)["model"] == "fallback-m"
    assert a.chat(chain.key)["model"] == "fallback-m"  # cooling down in A
    status, body = b.request("POST", "/api/v1/admin/models/reload", {"force": True}, STAFF_KEY)
    assert status == 200 and body["cooldowns_cleared"] >= 0
    assert a.chat(chain.key)["model"] == "primary-m"

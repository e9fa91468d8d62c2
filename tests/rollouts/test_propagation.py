"""Across processes: two real hub servers on one PostgreSQL put a conversation on the same
canary arm, and each obeys a rollout change made through the other on its next request
(through Redis, or the version file without it)."""

import pytest

from modelhub.models import Rollout
from tests.e2e.conftest import e2e_hub, needs_postgres, needs_redis, servers_running  # noqa: F401 - e2e_hub: fixture
from tests.factories import ApiKeyFactory
from tests.rollouts.conftest import chain_of

pytestmark = [needs_postgres, pytest.mark.django_db(transaction=True)]
STAFF_KEY = "pam_e2e-rollouts-staff"


@pytest.fixture
def hub_servers(request, transactional_db):
    env = {} if request.param == "redis" else {"REDIS_URL": ""}
    with servers_running(**env) as servers:
        yield servers


@pytest.fixture
def staff(e2e_hub, django_user_model):
    ApiKeyFactory(secret=STAFF_KEY, user=django_user_model.objects.create_user("e2e-ops", is_staff=True))
    chain_of(e2e_hub)
    return e2e_hub


def arm_of(server, key, conversation: str) -> str:
    status, body = server.request("POST", "/api/v1/pam/chat", {"message": "Hi", "conversation_id": conversation}, key)
    assert status == 200, body
    return body["routing"]["arm"]


def admin(server, path: str, body: dict) -> dict:
    status, answer = server.request("POST", f"/api/v1/admin/rollouts/{path}", body, STAFF_KEY)
    assert status in (200, 201), answer
    return answer


def arms_of(servers, key, conversations) -> dict[str, tuple[str, str]]:
    a, b = servers
    return {c: (arm_of(a, key, c), arm_of(b, key, c)) for c in conversations}


@pytest.mark.parametrize("hub_servers", [pytest.param("redis", marks=needs_redis), "version file"], indirect=True)
def test_every_process_puts_a_conversation_on_one_arm_and_obeys_a_change_on_its_next_request(staff, hub_servers):
    a, b = hub_servers
    assert set(arms_of(hub_servers, staff.key, ["warm"])["warm"]) == {"stable"}  # snapshots warm, no rollout

    rollout = admin(a, "", {"route": "pam", "candidate": "cand-m", "phase": "canary", "step_weights": [50, 100],
                            "min_requests": 100_000})  # fmt: skip
    arms = arms_of(hub_servers, staff.key, [f"conversation-{n}" for n in range(20)])
    assert all(on_a == on_b for on_a, on_b in arms.values()), arms  # b obeyed a's change, and the same hash
    assert {on_a for on_a, _ in arms.values()} == {"canary", "stable"}

    admin(b, f"{rollout['id']}/pause", {})
    assert set(arms_of(hub_servers, staff.key, arms).values()) == {("stable", "stable")}

    admin(a, f"{rollout['id']}/resume", {})
    assert arms_of(hub_servers, staff.key, arms) == arms

    admin(b, f"{rollout['id']}/rollback", {})
    assert set(arms_of(hub_servers, staff.key, arms).values()) == {("stable", "stable")}
    assert Rollout.objects.get().phase == "rolled_back"

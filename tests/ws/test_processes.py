"""A conversation continued on another hub process: two uvicorn servers on the test's
PostgreSQL, a socket to each."""

import pytest

from tests.e2e.conftest import e2e_hub, hub_servers, needs_postgres  # noqa: F401 - fixtures
from tests.ws.client import Socket

pytestmark = [pytest.mark.django_db(transaction=True), needs_postgres]


def test_a_reconnect_to_another_process_continues_the_conversation(e2e_hub, sim, hub_servers):
    e2e_hub.route("pam", [e2e_hub.model("gpt", "openai")])
    first, second = hub_servers

    with Socket(first, f"/ws/chat/?api_key={e2e_hub.key}") as socket:
        assert socket.event()["type"] == "ready"
        socket.chat("My name is Ada.", conversation_id="p-1")
    with Socket(second, f"/ws/chat/?api_key={e2e_hub.key}") as socket:
        socket.event()
        done = socket.chat("What is my name?", conversation_id="p-1")[-1]

    assert done["type"] == "done"
    assert [m["content"] for m in sim.calls[-1].body["messages"]] == [
        "My name is Ada.",
        "Simulated reply from gpt.",
        "What is my name?",
    ]

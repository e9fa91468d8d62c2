import pytest

from modelhub.services import api_key_create


@pytest.fixture
def talk(hub):
    """Route "pam" answered by one OpenAI model "big" (a 100,000-token window), route
    "small" by "little" (a window of a few short turns)."""
    hub.route("pam", [hub.model("big", "openai", context_window=100_000, max_output_tokens=100)])
    hub.route("small", [hub.model("little", "openai", context_window=320, max_output_tokens=50)])
    return hub


@pytest.fixture
def other_key(talk):
    return api_key_create(name="someone-else")[1]


def say(hub, text: str, conversation_id: str | None = "c-1", *, key=None, **body):
    response = hub.chat({"message": text, "conversation_id": conversation_id, **body}, key=key)
    assert response.status_code == 200, response.content
    return response.json()


def sent(sim) -> list[tuple[str, str]]:
    """(role, content) of the messages the last upstream call carried."""
    return [(m["role"], m["content"]) for m in sim.calls[-1].body["messages"]]

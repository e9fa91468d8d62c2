"""GET /api/v1/pam/conversations/<id>: the key's own conversation, its totals and its
messages; another key's, or an unknown id, is 404 alike."""

import pytest

from modelhub.models import ConversationMessage
from tests.conversations.conftest import say

REPLY = "Simulated reply from big."


def get(hub, conversation_id, key=None):
    headers = {} if key is False else {"Authorization": f"Bearer {key or hub.key}"}
    return hub.client.get(f"/api/v1/pam/conversations/{conversation_id}", headers=headers)


def test_a_conversation_with_its_totals_and_messages(talk, sim):
    first, second = say(talk, "My name is Ada."), say(talk, "What is my name?")

    response = get(talk, "c-1")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "conversation_id",
        "route",
        "turns",
        "usage",
        "cost_usd",
        "created_at",
        "updated_at",
        "messages",
    }
    assert (body["conversation_id"], body["route"], body["turns"]) == ("c-1", "pam", 2)
    assert body["usage"] == {
        "input_tokens": first["usage"]["input_tokens"] + second["usage"]["input_tokens"],
        "output_tokens": first["usage"]["output_tokens"] + second["usage"]["output_tokens"],
    }
    assert body["cost_usd"] == pytest.approx(first["cost_usd"] + second["cost_usd"])
    question, answer = body["messages"][2:]
    assert question == {
        "role": "user",
        "content": "What is my name?",
        "tool_calls": None,
        "model": None,
        "provider": None,
        "usage": None,
        "cost_usd": None,
        "request_id": second["request_id"],
        "created_at": question["created_at"],
    }
    assert answer == {
        "role": "assistant",
        "content": REPLY,
        "tool_calls": None,
        "model": "big",
        "provider": "sim-openai",
        "usage": second["usage"],
        "cost_usd": pytest.approx(second["cost_usd"]),
        "request_id": second["request_id"],
        "created_at": answer["created_at"],
    }
    assert [m["content"] for m in body["messages"][:2]] == ["My name is Ada.", REPLY]


def test_another_keys_conversation_is_404_like_an_unknown_one(talk, sim, other_key):
    say(talk, "My name is Ada.")

    theirs, unknown = get(talk, "c-1", key=other_key), get(talk, "nope")

    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["error"]["type"] == "not_found"
    assert "Ada" not in theirs.content.decode()


def test_without_a_key_it_is_401(talk, sim):
    say(talk, "Hi")
    response = get(talk, "c-1", key=False)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"


def test_an_id_may_hold_slashes_and_spaces(talk, sim):
    say(talk, "Hi", "team/alpha 7")
    assert get(talk, "team/alpha%207").json()["conversation_id"] == "team/alpha 7"


def test_a_tool_answer_lists_its_calls_and_a_tool_result_the_call_it_answers(hub, sim):
    hub.route("pam", [hub.model("gpt", "openai")])
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    (call,) = say(hub, "Weather?", tools=[weather])["tool_calls"]
    loop = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
    ]
    hub.chat({"messages": loop, "conversation_id": "c-1", "tools": [weather]})

    messages = get(hub, "c-1").json()["messages"]

    assert messages[1]["tool_calls"] == [call]
    assert messages[2]["tool_calls"] == {"tool_call_id": call["id"], "name": "get_weather"}
    assert ConversationMessage.objects.count() == 4

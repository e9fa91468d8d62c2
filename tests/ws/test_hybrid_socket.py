"""The PAM hybrid document's websocket, /api/v1/pam-hybrid/ws/<user_id>: its client's
shapes (``?token=``, ``{"type": "message", "content"}`` answered by one ``response``
event, ``ping`` / ``pong``), route "hybrid" by default, and one conversation per user
kept across messages and reconnections without the client naming it."""

import pytest

from modelhub.models import Conversation
from tests.ws.client import Socket, text_of

pytestmark = pytest.mark.django_db(transaction=True)
REPLY = "Simulated reply from mini."


def sent(sim) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in sim.calls[-1].body["messages"]]


def test_the_documents_message_is_answered_by_one_response_event(chat, sim):
    with Socket(chat.server, f"/api/v1/pam-hybrid/ws/user-7?token={chat.key}") as socket:
        ready = socket.event()
        socket.send(type="message", content="Show me my recent trips", context={"page": "trips"})
        (response,) = socket.until("response", "error")

    assert ready == {"type": "ready", "route": "hybrid", "user_id": "user-7", "conversation_id": "pam-hybrid:user-7"}
    assert response["type"] == "response"
    assert (response["content"], response["handler"], response["route"]) == (REPLY, "mini", "hybrid")
    assert response["cost_usd"] > 0 and response["latency_ms"] >= 0 and response["timestamp"]
    assert (response["tools_called"], response["agent_used"]) == ([], None)
    assert response["conversation_id"] == "pam-hybrid:user-7"
    assert "complexity" in response and response["usage"]["output_tokens"] > 0


def test_a_user_keeps_one_conversation_across_messages_and_reconnections(chat, sim):
    with Socket(chat.server, f"/api/v1/pam-hybrid/ws/user-7?token={chat.key}") as socket:
        socket.event()
        socket.send(type="message", content="My name is Ada.")
        socket.until("response")
    with Socket(chat.server, f"/api/v1/pam-hybrid/ws/user-7?token={chat.key}") as again:
        again.event()
        again.send(type="message", content="What is my name?")
        again.until("response")

    assert sent(sim) == [("user", "My name is Ada."), ("assistant", REPLY), ("user", "What is my name?")]
    assert list(Conversation.objects.values_list("conversation_id", "turns")) == [("pam-hybrid:user-7", 2)]


def test_each_user_has_a_conversation_of_their_own(chat, sim):
    for user, said in (("user-7", "I am seven."), ("user-8", "Who am I?")):
        with Socket(chat.server, f"/api/v1/pam-hybrid/ws/{user}?token={chat.key}") as socket:
            socket.event()
            socket.send(type="message", content=said)
            socket.until("response")
    assert sent(sim) == [("user", "Who am I?")]


def test_chat_messages_stream_here_too_and_may_name_their_own_conversation(chat, sim):
    with Socket(chat.server, f"/api/v1/pam-hybrid/ws/user-7?token={chat.key}") as socket:
        socket.event()
        streamed = socket.chat("Hi", conversation_id="elsewhere")
        unkept = socket.chat("Hi", conversation_id=None)
        socket.send(type="ping")
        pong = socket.event()

    assert text_of(streamed) == REPLY and streamed[-1]["route"] == "hybrid"
    assert streamed[-1]["conversation_id"] == "elsewhere" and unkept[-1]["conversation_id"] is None
    assert list(Conversation.objects.values_list("conversation_id", flat=True)) == ["elsewhere"]
    assert pong["type"] == "pong" and pong["timestamp"]


def test_a_bad_token_is_an_error_event_then_auth_by_message_works(chat, sim):
    with Socket(chat.server, "/api/v1/pam-hybrid/ws/user-7?token=wrong") as socket:
        refused = socket.event()
        socket.send(type="message", content="Hi")
        again = socket.event()
        socket.send(type="auth", api_key=chat.key)
        socket.event()
        socket.send(type="message", content="Hi")
        (response,) = socket.until("response")

    assert (refused["type"], refused["status"]) == ("error", 401)
    assert (again["type"], again["status"]) == ("error", 401)
    assert response["content"] == REPLY

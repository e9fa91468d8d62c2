"""Websocket chat over a real server (uvicorn) with a real client (``websockets``): auth by
query parameter, header or first message; streamed ``delta`` events and a ``done`` event
with the native answer's metadata; memory across turns and reconnections (the upstream's
requests show it); every bad message an ``error`` event on a socket that stays open."""

import http.client
import time

import orjson
import pytest
from websockets.exceptions import InvalidStatus

from modelhub.models import ApiKey, ConversationMessage
from modelhub.services import api_key_create, api_key_set_active
from tests.hubserver import ledger_rows
from tests.ws.client import Socket, text_of

pytestmark = pytest.mark.django_db(transaction=True)
REPLY = "Simulated reply from gpt."


def sent(sim) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in sim.calls[-1].body["messages"]]


def native_done(live) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", live.server.port, timeout=10)
    body = orjson.dumps({"message": "Hi", "stream": True})
    connection.request("POST", "/api/v1/pam/chat", body, {"Authorization": f"Bearer {live.key}"})
    last = connection.getresponse().read().decode().strip().split("\n\n")[-1]
    connection.close()
    name, data = (line.split(": ", 1)[1] for line in last.split("\n"))
    assert name == "done"
    return orjson.loads(data)


def test_a_key_in_the_query_then_deltas_and_the_native_done_event(chat, sim):
    with Socket(chat.server, f"/ws/chat/?api_key={chat.key}") as socket:
        assert socket.event() == {"type": "ready", "route": "pam"}
        *deltas, done = socket.chat("Hi", id="m-1")

    assert {e["type"] for e in deltas} == {"delta"} and len(deltas) > 1
    assert text_of(deltas) == REPLY
    assert all(e["id"] == "m-1" for e in [*deltas, done])
    assert done["type"] == "done"
    assert set(done) - {"type", "id"} == set(native_done(chat))
    assert (done["model"], done["provider"], done["route"], done["source"]) == ("gpt", "sim-openai", "pam", "primary")
    assert done["usage"]["output_tokens"] > 0 and done["cost_usd"] > 0 and done["conversation_id"] is None
    assert [a["outcome"] for a in done["attempts"]] == ["ok"]


def test_memory_across_turns_and_a_reconnect_with_the_same_conversation(chat, sim):
    with Socket(chat.server, f"/ws/chat/?api_key={chat.key}") as socket:
        socket.event()
        socket.chat("My name is Ada.", conversation_id="w-1")
        second = socket.chat("What is my name?", conversation_id="w-1")
        assert sent(sim) == [("user", "My name is Ada."), ("assistant", REPLY), ("user", "What is my name?")]

    with Socket(chat.server, f"/ws/chat/?api_key={chat.key}") as again:
        again.event()
        third = again.chat("And again?", conversation_id="w-1")

    assert sent(sim) == [
        ("user", "My name is Ada."),
        ("assistant", REPLY),
        ("user", "What is my name?"),
        ("assistant", text_of(second)),
        ("user", "And again?"),
    ]
    assert third[-1]["conversation_id"] == "w-1"
    assert ConversationMessage.objects.filter(conversation__conversation_id="w-1").count() == 6


def test_auth_by_the_first_message_after_a_refusal(chat, sim):
    with Socket(chat.server, "/ws/chat/") as socket:
        refused = socket.chat("Hi")[-1]
        socket.send(type="auth", api_key="pam_not-a-key")
        wrong = socket.event()
        socket.send(type="auth", api_key=chat.key, id=7)
        ready = socket.event()
        answered = socket.chat("Hi")

    assert (refused["type"], refused["status"], refused["error"]["type"]) == ("error", 401, "authentication_error")
    assert "auth" in refused["message"]
    assert (wrong["status"], wrong["error"]["type"]) == (401, "authentication_error")
    assert ready == {"type": "ready", "route": "pam", "id": 7}
    assert text_of(answered) == REPLY
    assert len(sim.calls) == 1


def test_a_bearer_header_authenticates_too(chat, sim):
    with Socket(chat.server, "/ws/chat/", Authorization=f"Bearer {chat.key}") as socket:
        assert socket.event()["type"] == "ready"
        assert socket.chat("Hi")[-1]["type"] == "done"


@pytest.mark.parametrize(
    "raw, status, kind, param",
    [
        ("not json", 400, "invalid_request_error", "type"),
        ("[1, 2]", 400, "invalid_request_error", "type"),
        ('{"type": "dance"}', 400, "invalid_request_error", "type"),
        ('{"message": "no type"}', 400, "invalid_request_error", "type"),
        ('{"type": "chat"}', 400, "invalid_request_error", "message"),
        ('{"type": "chat", "message": "  "}', 400, "invalid_request_error", "message"),
        ('{"type": "chat", "message": "Hi", "max_tokens": -1}', 400, "invalid_request_error", "max_tokens"),
        ('{"type": "chat", "message": "Hi", "conversation_id": 5}', 400, "invalid_request_error", "conversation_id"),
        ('{"type": "chat", "message": "Hi", "route": "nowhere"}', 404, "unknown_route", "model"),
        ('{"type": "auth", "api_key": 12}', 400, "invalid_request_error", "api_key"),
    ],
)
def test_a_bad_message_is_an_error_event_and_the_socket_stays_open(chat, sim, raw, status, kind, param):
    with Socket(chat.server, f"/ws/chat/?api_key={chat.key}") as socket:
        socket.event()
        socket.send_raw(raw)
        error = socket.event()
        still = socket.chat("Hi")

    assert (error["type"], error["status"], error["error"]["type"]) == ("error", status, kind)
    assert error["error"].get("param") == param and error["message"] == error["error"]["message"]
    assert still[-1]["type"] == "done"


def test_a_message_over_the_body_limit_is_413(chat, sim, settings):
    settings.MODELHUB = {**settings.MODELHUB, "MAX_BODY_BYTES": 1000}
    with Socket(chat.server, f"/ws/chat/?api_key={chat.key}") as socket:
        socket.event()
        socket.send(type="chat", message="x" * 2000)
        error = socket.event()
        socket.send(type="ping")
        assert socket.event()["type"] == "pong"
    assert (error["type"], error["status"]) == ("error", 413) and sim.calls == []


def test_a_route_the_key_may_not_use_is_403_and_every_model_failing_is_503(chat, sim):
    limited = api_key_create(name="limited", routes=[chat.route("elsewhere", [chat.model("far", "google")])])[1]
    sim.set_fault("gpt", status=500)
    with Socket(chat.server, f"/ws/chat/?api_key={limited}") as socket:
        socket.event()
        forbidden = socket.chat("Hi")[-1]
    with Socket(chat.server, f"/ws/chat/?api_key={chat.key}") as socket:
        socket.event()
        failed = socket.chat("Hi")[-1]

    assert (forbidden["status"], forbidden["error"]["type"]) == (403, "route_not_allowed")
    assert (failed["status"], failed["error"]["type"]) == (503, "all_models_failed")
    assert [a["model"] for a in failed["error"]["attempts"]] == ["gpt"] and failed["request_id"]


def test_a_key_revoked_while_connected_stops_at_its_next_message(chat, sim):
    with Socket(chat.server, f"/ws/chat/?api_key={chat.key}") as socket:
        socket.event()
        assert socket.chat("Hi")[-1]["type"] == "done"
        api_key_set_active(key=ApiKey.objects.get(pk=chat.key_obj.pk), active=False)
        refused = socket.chat("Hi again")[-1]
    assert (refused["status"], refused["error"]["type"]) == (401, "authentication_error")
    assert len(sim.calls) == 1


def test_messages_sent_together_are_answered_in_order_each_seeing_the_last(chat, sim):
    with Socket(chat.server, f"/ws/chat/?api_key={chat.key}") as socket:
        socket.event()
        socket.send(type="chat", message="One", conversation_id="w-2", id=1)
        socket.send(type="chat", message="Two", conversation_id="w-2", id=2)
        socket.send(type="ping", id=3)
        events = socket.until("done")
        events += socket.until("done")

    pong = next(e for e in events if e["type"] == "pong")
    answers = [e for e in events if e["type"] != "pong"]
    assert pong["id"] == 3 and pong["timestamp"]
    assert [e["id"] for e in answers] == sorted(e["id"] for e in answers)  # all of 1, then all of 2
    assert sent(sim) == [("user", "One"), ("assistant", REPLY), ("user", "Two")]


def test_a_client_that_leaves_mid_answer_cancels_it_and_keeps_what_was_answered(chat, sim):
    sim.set_pace("gpt", chunks=200, interval_ms=20)
    with Socket(chat.server, f"/ws/chat/?api_key={chat.key}") as socket:
        socket.event()
        socket.send(type="chat", message="Count to 200", conversation_id="w-3")
        deltas = [socket.event() for _ in range(3)]
    assert text_of(deltas) == "1 2 3"

    (row,) = ledger_rows("gpt", until=lambda rows: rows and rows[0].outcome != "ok")
    answer = _kept_answer()

    assert row.outcome == "client_disconnected"
    assert answer.content.startswith("1 2 3") and len(answer.content.split()) < 200
    assert (answer.input_tokens, answer.output_tokens) == (row.input_tokens, row.output_tokens)


def _kept_answer(timeout: float = 5.0) -> ConversationMessage:
    deadline = time.monotonic() + timeout
    while not ConversationMessage.objects.filter(role="assistant").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return ConversationMessage.objects.get(role="assistant")


def test_a_stream_cut_by_its_model_ends_with_an_error_event(chat, sim):
    sim.set_fault("gpt", cut_after_chunks=2)
    with Socket(chat.server, f"/ws/chat/?api_key={chat.key}") as socket:
        socket.event()
        *deltas, error = socket.chat("Hi", conversation_id="w-4")
        socket.send(type="ping")
        assert socket.event()["type"] == "pong"

    assert (error["type"], error["error"]["type"], error["error"]["kind"]) == ("error", "stream_error", "connection")
    assert error["model"] == "gpt" and error["usage"]["output_tokens"] > 0
    assert ConversationMessage.objects.get(role="assistant").content == text_of(deltas) != ""


def test_an_unknown_path_is_refused_at_the_handshake(chat):
    with pytest.raises(InvalidStatus) as refused:
        Socket(chat.server, f"/ws/elsewhere/?api_key={chat.key}")
    assert refused.value.response.status_code == 403


def test_past_the_key_rate_a_message_is_a_429_event_with_retry_after(chat, sim):
    limited = api_key_create(name="one-a-minute", rpm_limit=1)[1]
    with Socket(chat.server, f"/ws/chat/?api_key={limited}") as socket:
        socket.event()
        assert socket.chat("Hi")[-1]["type"] == "done"
        refused = socket.chat("Hi again")[-1]
    assert (refused["status"], refused["error"]["type"]) == (429, "rate_limit_exceeded")
    assert 0 < refused["retry_after"] <= 60


def test_a_socket_holds_a_bounded_queue_of_messages(chat, sim):
    sim.set_pace("gpt", chunks=50, interval_ms=20)
    with Socket(chat.server, f"/ws/chat/?api_key={chat.key}") as socket:
        socket.event()
        for n in range(1, 21):
            socket.send(type="chat", message=f"Message {n}", id=n)
        refused = []
        while len(refused) < 4:
            event = socket.event()
            if event["type"] == "error":
                refused.append(event)
    assert [(e["id"], e["status"]) for e in refused] == [(17, 429), (18, 429), (19, 429), (20, 429)]

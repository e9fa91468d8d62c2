"""Streamed turns through a real server: kept once the stream ends (before its ``done``
event, so the next turn finds it), as far as it went when a failure cut it or its client
left in the middle."""

import http.client
import time

import orjson
import pytest

from modelhub.models import Conversation, ConversationMessage
from tests.hubserver import hub_server, ledger_rows, live  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def streaming(live):
    live.route("pam", [live.model("paced", "openai", context_window=100_000, max_output_tokens=500)])
    return live


def events_of(live, body) -> list[tuple[str, dict]]:
    connection = http.client.HTTPConnection("127.0.0.1", live.server.port, timeout=10)
    connection.request("POST", "/api/v1/pam/chat", orjson.dumps({"stream": True, **body}), headers(live))
    raw = connection.getresponse().read().decode()
    connection.close()
    return [_event(block) for block in raw.strip().split("\n\n")]


def headers(live) -> dict:
    return {"Authorization": f"Bearer {live.key}", "Content-Type": "application/json"}


def _event(block: str) -> tuple[str, dict]:
    name, data = (line.split(": ", 1)[1] for line in block.split("\n"))
    return name, orjson.loads(data)


def kept_answers(until, timeout: float = 5.0) -> list[ConversationMessage]:
    """The assistant messages kept, once ``until(rows)`` holds (the server thread records a
    stream its client left after the client has moved on)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = list(ConversationMessage.objects.filter(role="assistant").order_by("id"))
        if until(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


def test_a_streamed_turn_is_kept_and_the_next_one_carries_it(streaming, sim):
    first = events_of(streaming, {"message": "My name is Ada.", "conversation_id": "s-1"})
    second = events_of(streaming, {"message": "What is my name?", "conversation_id": "s-1"})

    text = "".join(data["content"] for name, data in first if name == "delta")
    assert [m["content"] for m in sim.calls[-1].body["messages"]] == ["My name is Ada.", text, "What is my name?"]
    (answer, _) = ConversationMessage.objects.filter(role="assistant").order_by("id")
    done = first[-1][1]
    assert first[-1][0] == second[-1][0] == "done"
    assert (answer.content, answer.model, answer.request_id) == (text, "paced", done["request_id"])
    assert (answer.input_tokens, answer.output_tokens) == tuple(done["usage"].values())
    assert Conversation.objects.get().turns == 2


def test_a_stream_cut_by_its_model_keeps_what_was_answered(streaming, sim):
    sim.set_fault("paced", cut_after_chunks=2)

    events = events_of(streaming, {"message": "Count", "conversation_id": "s-1"})

    assert events[-1][0] == "error"
    (answer,) = ConversationMessage.objects.filter(role="assistant")
    assert answer.content == "".join(data["content"] for name, data in events if name == "delta") != ""
    assert answer.output_tokens == events[-1][1]["usage"]["output_tokens"]


def test_a_client_that_leaves_mid_stream_leaves_what_was_answered(streaming, sim):
    sim.set_pace("paced", chunks=200, interval_ms=20)
    connection = http.client.HTTPConnection("127.0.0.1", streaming.server.port, timeout=10)
    body = {"message": "Count to 200", "conversation_id": "s-1", "stream": True}
    connection.request("POST", "/api/v1/pam/chat", orjson.dumps(body), headers(streaming))
    response = connection.getresponse()
    seen = ""
    while seen.count("event: delta") < 3:
        seen += response.read1(4096).decode()
    connection.close()

    (answer,) = kept_answers(until=bool)

    assert answer.content.startswith("1 2 3") and len(answer.content.split()) < 200
    (row,) = ledger_rows("paced", until=lambda rows: rows and rows[0].outcome == "client_disconnected")
    assert row.outcome == "client_disconnected"
    assert (answer.input_tokens, answer.output_tokens) == (row.input_tokens, row.output_tokens)
    assert [m.content for m in ConversationMessage.objects.filter(role="user")] == ["Count to 200"]

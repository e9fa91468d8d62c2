"""Streamed answers on the native endpoint, through a real server: failover until the first
content, an explicit error event after it, a ledger row per attempt, the upstream call
cancelled when the client leaves."""

import asyncio
import threading
import urllib.request

import openai
import orjson
import pytest

from modelhub.models import ModelHealth, Provider
from tests.hubserver import HubServer, hub_server, ledger_rows, live  # noqa: F401 - fixtures

# Committed rows: the server thread reads them.
pytestmark = pytest.mark.django_db(transaction=True)


def _chain(hub, *kinds, **route_fields):
    models = [hub.model(f"m{i}-{kind}", kind) for i, kind in enumerate(kinds)]
    route = hub.route("pam", models)
    for name, value in route_fields.items():
        setattr(route, name, value)
    route.save()
    return models


def _native(live, body) -> tuple[int, list[tuple[str, dict]]]:
    request = urllib.request.Request(
        f"{live.server.url}/api/v1/pam/chat",
        data=orjson.dumps({"message": "Hi", "stream": True, **body}),
        headers={"Authorization": f"Bearer {live.key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw, kind = response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, [("json", orjson.loads(exc.read()))]
    if kind == "application/json":
        return status, [("json", orjson.loads(raw))]
    events = []
    for block in raw.decode().strip().split("\n\n"):
        name, data = (line.split(": ", 1)[1] for line in block.split("\n"))
        events.append((name, orjson.loads(data)))
    return status, events


def test_native_stream_sends_deltas_then_the_plain_answers_metadata(live):
    (model,) = _chain(live, "anthropic")
    status, events = _native(live, {"conversation_id": "c-1"})
    assert status == 200
    *deltas, (last, done) = events
    assert {name for name, _ in deltas} == {"delta"}
    assert "".join(d["content"] for _, d in deltas) == f"Simulated reply from {model.model_id}."
    assert last == "done"
    assert (done["model"], done["provider"], done["route"], done["source"]) == (
        model.model_id,
        "sim-anthropic",
        "pam",
        "primary",
    )
    assert done["usage"] == {"input_tokens": 1, "output_tokens": 4}
    assert done["finish_reason"] == "stop" and done["conversation_id"] == "c-1"
    assert done["cost_usd"] > 0 and [a["outcome"] for a in done["attempts"]] == ["ok"]


@pytest.mark.parametrize("kind", ["anthropic", "google", "openai"])
def test_native_stream_of_a_tool_call_sends_its_deltas_then_the_whole_call(live, kind):
    _chain(live, kind)
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
    status, events = _native(live, {"tools": [tool]})
    assert status == 200
    *deltas, (last, done) = events
    pieces = [p for _, d in deltas for p in d.get("tool_calls", ())]  # Claude may say a word first
    assert pieces[0]["id"] and pieces[0]["function"]["name"] == "lookup"
    assert {p["index"] for p in pieces} == {0}
    arguments = "".join(p["function"]["arguments"] for p in pieces)
    assert (last, orjson.loads(arguments)) == ("done", {"q": "example"})
    assert done["finish_reason"] == "tool_calls"
    assert done["tool_calls"] == [
        {"id": pieces[0]["id"], "type": "function", "function": {"name": "lookup", "arguments": arguments}}
    ]
    assert done["usage"]["output_tokens"] > 0


@pytest.mark.parametrize("fault", [{"status": 503}, {"status": 429}, {"cut_after_chunks": 0}])
def test_failover_before_content_is_invisible(live, sim, fault):
    first, second, third = _chain(live, "google", "openai_compatible", "anthropic")
    sim.set_fault(first.model_id, **fault)
    sim.set_fault(second.model_id, **fault)
    status, events = _native(live, {})
    done = events[-1][1]
    assert status == 200 and events[-1][0] == "done"
    assert done["model"] == third.model_id and done["source"] == "fallback_2"
    assert [a["outcome"] for a in done["attempts"]][-1] == "ok" and len(done["attempts"]) == 3
    rows = ledger_rows(first.model_id, until=bool)
    assert rows[0].stream and rows[0].outcome != "ok"


def test_failure_after_content_ends_with_an_error_event_and_cools_the_model(live, sim):
    primary, fallback = _chain(live, "anthropic", "openai")
    sim.set_fault(primary.model_id, error_event_after_chunks=2)
    status, events = _native(live, {})
    name, error = events[-1]
    assert status == 200 and name == "error"
    assert error["error"]["kind"] == "overloaded"
    assert "".join(d["content"] for n, d in events if n == "delta") == "Simulated reply"
    assert [c.model for c in sim.calls] == [primary.model_id]
    (row,) = ledger_rows(primary.model_id, until=bool)
    assert (row.outcome, row.input_tokens, row.output_tokens) == ("overloaded", 1, 4)
    assert ModelHealth.objects.get(model=primary).state == "cooling_down"


def test_dropped_stream_is_counted_from_what_was_streamed(live, sim):
    primary, _ = _chain(live, "openai", "anthropic")
    sim.set_fault(primary.model_id, cut_after_chunks=3)
    _, events = _native(live, {})
    assert events[-1][0] == "error"
    (row,) = ledger_rows(primary.model_id, until=bool)
    assert row.outcome == "connection" and row.output_tokens >= 3 and row.cost_usd > 0


def test_deadline_before_content_is_a_504(live, sim):
    primary, _ = _chain(live, "anthropic", "openai", latency_budget_ms=300)
    sim.set_fault(primary.model_id, hang=True)
    status, events = _native(live, {})
    assert status == 504
    assert events[0][1]["error"]["type"] == "deadline_exceeded"
    assert [a["outcome"] for a in events[0][1]["error"]["attempts"]] == ["timeout"]


def test_plain_call_fails_over_after_the_ttft_timeout(live, sim):
    primary, fallback = _chain(live, "openai", "google", ttft_timeout_ms=300)
    sim.set_fault(primary.model_id, hang=True)
    status, events = _native(live, {"stream": False})
    assert status == 200 and events[0][1]["model"] == fallback.model_id
    assert ledger_rows(primary.model_id, until=bool)[0].outcome == "timeout"
    assert ModelHealth.objects.get(model=primary).last_error_kind == "timeout"


class StallingUpstream:
    """Speaks OpenAI's stream: one content chunk, then nothing until the client leaves."""

    def __init__(self):
        self.left = threading.Event()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "staller",
            "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}],
        }
        await send({"type": "http.response.body", "body": b"data: " + orjson.dumps(chunk) + b"\n\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            await asyncio.sleep(0)
        self.left.set()


@pytest.fixture
def staller():
    upstream = StallingUpstream()
    server = HubServer(app=upstream)
    server.start()
    yield upstream, server
    server.stop()


def test_client_disconnect_cancels_upstream_and_leaves_a_usage_row(live, staller):
    upstream, server = staller
    Provider.objects.filter(pk=live.providers["openai_compatible"].pk).update(base_url=f"{server.url}/v1")
    (model,) = _chain(live, "openai_compatible")
    with openai.OpenAI(base_url=f"{live.server.url}/v1", api_key=live.key, max_retries=0) as client:
        stream = client.chat.completions.create(model="pam", messages=[{"role": "user", "content": "Hi"}], stream=True)
        assert next(iter(stream)).choices[0].delta.content == "Hello"
        stream.close()
    assert upstream.left.wait(5), "the upstream call was not cancelled"
    (row,) = ledger_rows(model.model_id, until=bool)
    assert (row.outcome, row.stream, row.output_tokens) == ("client_disconnected", True, 2)
    assert row.ttft_ms is not None

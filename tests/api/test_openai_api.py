"""The OpenAI-compatible API, with the official OpenAI SDK as the client over real HTTP."""

import openai
import pytest

from modelhub.models import UsageRecord
from modelhub.runtime import runtime
from tests.hubserver import hub_server, live  # noqa: F401 - fixtures

# Committed rows: the server thread reads them.
pytestmark = pytest.mark.django_db(transaction=True)
MESSAGES = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def oai(live):
    with openai.OpenAI(base_url=f"{live.server.url}/v1", api_key=live.key, max_retries=0, timeout=10) as client:
        yield client


def _chain(hub, *kinds, name="pam", **route_fields):
    models = [hub.model(f"m{i}-{kind}", kind) for i, kind in enumerate(kinds)]
    route = hub.route(name, models)
    if route_fields:
        for name, value in route_fields.items():
            setattr(route, name, value)
        route.save()
    return models


def _text(stream) -> tuple[str, list]:
    chunks = list(stream)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


def test_plain_completion_names_the_model_that_answered(live, oai, sim):
    primary, fallback = _chain(live, "anthropic", "openai")
    sim.set_fault(primary.model_id, status=529)
    raw = oai.chat.completions.with_raw_response.create(model="pam", messages=MESSAGES, max_tokens=50)
    completion = raw.parse()
    assert completion.model == fallback.model_id
    assert completion.choices[0].message.content == f"Simulated reply from {fallback.model_id}."
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 4)
    assert (raw.headers["x-modelhub-route"], raw.headers["x-modelhub-attempts"]) == ("pam", "2")


def test_model_may_name_a_model_id(live, oai):
    _chain(live, "openai")
    gemini = live.model("gem", "google")
    completion = oai.chat.completions.create(model="gem", messages=MESSAGES, max_completion_tokens=2)
    assert completion.model == gemini.model_id
    assert completion.choices[0].finish_reason == "length"


@pytest.mark.parametrize("kind", ["anthropic", "openai", "google", "openai_compatible"])
def test_stream_with_usage(live, oai, kind):
    (model,) = _chain(live, kind)
    stream = oai.chat.completions.create(
        model="pam", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text, chunks = _text(stream)
    assert text == f"Simulated reply from {model.model_id}."
    assert {c.model for c in chunks} == {model.model_id}
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (2, 4)
    runtime().ledger.flush()
    row = UsageRecord.objects.get()
    assert (row.stream, row.outcome, row.output_tokens) == (True, "ok", 4)
    assert row.ttft_ms is not None


def test_stream_without_usage_option_has_no_usage_chunk(live, oai):
    _chain(live, "openai")
    _, chunks = _text(oai.chat.completions.create(model="pam", messages=MESSAGES, stream=True))
    assert all(c.usage is None for c in chunks)


def test_unknown_model_is_404_in_openais_shape(live, oai, sim):
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="no-such-model", messages=MESSAGES)
    error = caught.value.body
    assert caught.value.status_code == 404
    assert (error["code"], error["param"], error["type"]) == ("model_not_found", "model", "invalid_request_error")
    assert "no-such-model" in error["message"]
    assert sim.calls == []


def test_bad_input_is_a_400_naming_the_param(live, oai):
    _chain(live, "openai")
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model="pam", messages=MESSAGES, temperature=5)
    assert caught.value.body["param"] == "temperature"


def test_wrong_key_is_401(live, oai):
    bad = oai.with_options(api_key="pam_wrong")
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="pam", messages=MESSAGES)


@pytest.mark.parametrize(
    "fault",
    [{"status": 500}, {"error_event_after_chunks": 0}, {"cut_after_chunks": 0}, {"malformed": True}],
    ids=["status", "error-event-before-content", "dropped-before-content", "malformed"],
)
def test_stream_fails_over_before_the_first_token(live, oai, sim, fault):
    primary, fallback = _chain(live, "openai", "anthropic")
    sim.set_fault(primary.model_id, **fault)
    raw = oai.chat.completions.with_raw_response.create(model="pam", messages=MESSAGES, stream=True)
    text, chunks = _text(raw.parse())
    assert text == f"Simulated reply from {fallback.model_id}."
    assert chunks[0].model == fallback.model_id
    assert raw.headers["x-modelhub-attempts"] == "2"
    assert [c.model for c in sim.calls] == [primary.model_id, fallback.model_id]


def test_stream_fails_over_when_the_first_token_is_late(live, oai, sim):
    primary, fallback = _chain(live, "google", "openai", ttft_timeout_ms=300)
    sim.set_fault(primary.model_id, hang=True)
    text, _ = _text(oai.chat.completions.create(model="pam", messages=MESSAGES, stream=True))
    assert text == f"Simulated reply from {fallback.model_id}."
    runtime().ledger.flush()
    assert UsageRecord.objects.get(model=primary.model_id).outcome == "timeout"


@pytest.mark.parametrize(
    "fault", [{"cut_after_chunks": 2}, {"error_event_after_chunks": 2}], ids=["cut", "error-event"]
)
@pytest.mark.parametrize("kind", ["openai", "anthropic", "google"])
def test_failure_after_content_is_an_error_the_sdk_raises(live, oai, sim, fault, kind):
    primary, fallback = _chain(live, kind, "openai")
    sim.set_fault(primary.model_id, **fault)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in oai.chat.completions.create(model="pam", messages=MESSAGES, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Simulated reply"
    assert "cut" in caught.value.message
    assert [c.model for c in sim.calls] == [primary.model_id]  # no failover once content was sent
    runtime().ledger.flush()
    row = UsageRecord.objects.get()
    assert row.outcome != "ok" and row.stream and row.output_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_route_deadline_answers_504_with_the_attempts(live, oai, sim, stream):
    primary, fallback = _chain(live, "openai", "anthropic", latency_budget_ms=400)
    sim.set_fault(primary.model_id, hang=True)
    with pytest.raises(openai.InternalServerError) as caught:
        oai.chat.completions.create(model="pam", messages=MESSAGES, stream=stream)
    assert caught.value.status_code == 504
    error = caught.value.body
    assert error["code"] == "deadline_exceeded"
    assert [a["model"] for a in error["attempts"]] == [primary.model_id]
    assert [c.model for c in sim.calls] == [primary.model_id]


def test_models_lists_routes_and_models(live, oai):
    _chain(live, "openai", "google")
    ids = [m.id for m in oai.models.list()]
    assert "pam" in ids and "m0-openai" in ids and "m1-google" in ids


@pytest.mark.parametrize("kind", ["openai", "openai_compatible", "anthropic"])
def test_a_stream_from_the_openai_wire_is_relayed_as_the_upstreams_chunks_with_the_hubs_id(live, oai, kind):
    """Same wire format: the upstream's own chunks (its system_fingerprint shows it), with the
    hub's id; another wire format: the hub's chunks. Either way one answer, one id, usage."""
    (model,) = _chain(live, kind)
    raw = oai.chat.completions.with_raw_response.create(
        model="pam", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text, chunks = _text(raw.parse())
    assert text == f"Simulated reply from {model.model_id}."
    assert {c.id for c in chunks} == {f"chatcmpl-{raw.headers['x-request-id']}"}
    relayed = {c.system_fingerprint for c in chunks if c.choices and c.choices[0].delta.content}
    assert relayed == ({"fp_simulator"} if kind != "anthropic" else {None})
    assert chunks[0].choices[0].delta.role == "assistant"
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (2, 4)
    runtime().ledger.flush()
    row = UsageRecord.objects.get()
    assert (row.outcome, row.output_tokens) == ("ok", 4)


def test_a_stream_with_tools_is_parsed_not_relayed(live, oai):
    _chain(live, "openai")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    _, chunks = _text(oai.chat.completions.create(model="pam", messages=MESSAGES, stream=True, tools=tools))
    assert chunks and all(c.system_fingerprint is None for c in chunks)

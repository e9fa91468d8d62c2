"""Tools, images and JSON output end to end: the official OpenAI SDK (and a LangChain agent)
against the hub over real HTTP, the hub against the simulator through each provider's own
SDK, plain and streamed, on routes whose primary is Claude, Gemini or GPT."""

import base64
import json

import openai
import pytest

from modelhub.models import UsageRecord
from modelhub.runtime import runtime
from tests.hubserver import hub_server, live  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)
KINDS = ("anthropic", "google", "openai")
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
CAPABLE = {"supports_vision": True, "supports_json_schema": True}


@pytest.fixture
def oai(live):
    with openai.OpenAI(base_url=f"{live.server.url}/v1", api_key=live.key, max_retries=0, timeout=10) as client:
        yield client


def _route(hub, *kinds):
    models = [hub.model(f"m{i}-{kind}", kind, **CAPABLE) for i, kind in enumerate(kinds)]
    hub.route("pam", models)
    return models


def _ask(oai, messages, *, stream: bool, **options):
    """The assistant's message and finish reason; streamed answers rebuilt by the SDK's own
    stream accumulator (``chat.completions.stream``)."""
    if not stream:
        choice = oai.chat.completions.create(model="pam", messages=messages, **options).choices[0]
        return choice.message, choice.finish_reason
    with oai.chat.completions.stream(model="pam", messages=messages, **options) as events:
        choice = events.get_final_completion().choices[0]
    return choice.message, choice.finish_reason


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_two_turn_tool_loop(live, oai, sim, kind, stream):
    (model,) = _route(live, kind)

    message, finish = _ask(oai, ASK, stream=stream, tools=[WEATHER])

    assert finish == "tool_calls"
    [call] = message.tool_calls
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "example", "unit": "celsius"}

    history = [
        *ASK,
        message.model_dump(exclude_none=True, exclude={"parsed", "refusal", "annotations", "audio"}),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
    ]
    answer, finish = _ask(oai, history, stream=stream, tools=[WEATHER])

    assert finish == "stop"
    assert not answer.tool_calls
    assert "18 degrees and sunny" in answer.content
    assert [c.model for c in sim.calls] == [model.model_id] * 2


def test_the_tool_history_reaches_the_failover_model(live, oai, sim):
    primary, fallback = _route(live, "anthropic", "google")
    first, _ = _ask(oai, ASK, stream=False, tools=[WEATHER])
    [call] = first.tool_calls
    sim.set_fault(primary.model_id, status=529)
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "rain"},
    ]

    answer = oai.chat.completions.create(model="pam", messages=history, tools=[WEATHER])

    assert answer.model == fallback.model_id
    assert "rain" in answer.choices[0].message.content
    contents = sim.calls[-1].body["contents"]  # Gemini's shape of the same conversation
    assert contents[1]["parts"][0]["functionCall"]["name"] == "get_weather"
    assert contents[2]["parts"][0]["functionResponse"]["name"] == "get_weather"


def test_a_claude_tool_history_fails_over_to_a_signing_gemini_model(live, oai, sim):
    """Gemini 2.5+ refuses a function call without its thought signature; one made by
    Claude has none, so the hub sends Google's documented stand-in."""
    claude = live.model("claude-x", "anthropic", **CAPABLE)
    gemini = live.model("gemini-2.5-flash", "google", **CAPABLE)
    live.route("pam", [claude, gemini])
    [call] = oai.chat.completions.create(model="pam", messages=ASK, tools=[WEATHER]).choices[0].message.tool_calls
    sim.set_fault("claude-x", status=500)
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "snow"},
    ]

    answer = oai.chat.completions.create(model="pam", messages=history, tools=[WEATHER])

    assert answer.model == "gemini-2.5-flash"
    assert "snow" in answer.choices[0].message.content


@pytest.mark.parametrize("kind", KINDS)
def test_a_tool_stream_fails_over_before_the_first_byte(live, oai, sim, kind):
    primary, fallback = _route(live, "openai" if kind != "openai" else "anthropic", kind)
    sim.set_fault(primary.model_id, status=500)

    raw = oai.chat.completions.with_raw_response.create(model="pam", messages=ASK, tools=[WEATHER], stream=True)
    chunks = list(raw.parse())

    assert raw.headers["x-modelhub-attempts"] == "2"
    assert {c.model for c in chunks} == {fallback.model_id}
    deltas = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or ()]
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "example", "unit": "celsius"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    runtime().ledger.flush()
    assert sorted(UsageRecord.objects.values_list("outcome", flat=True)) == ["ok", "server"]


@pytest.mark.parametrize("kind", KINDS)
def test_an_image_is_answered_by_each_provider(live, oai, sim, kind):
    _route(live, kind)
    content = [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": PNG}}]

    completion = oai.chat.completions.create(model="pam", messages=[{"role": "user", "content": content}])

    assert "I received 1 image." in completion.choices[0].message.content


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("kind", KINDS)
def test_json_output_parses_from_each_provider(live, oai, kind, stream):
    _route(live, kind)
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}

    message, finish = _ask(oai, ASK, stream=stream, response_format=response_format)

    assert finish == "stop"
    assert json.loads(message.content) == {"name": "example", "age": 1}


@pytest.mark.parametrize("kind", KINDS)
def test_json_object_mode_answers_a_json_object(live, oai, kind):
    _route(live, kind)
    completion = oai.chat.completions.create(model="pam", messages=ASK, response_format={"type": "json_object"})
    assert isinstance(json.loads(completion.choices[0].message.content), dict)


def test_a_langchain_agent_completes_a_tool_loop(live, sim):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return f"It is 18 degrees in {city}."

    (model,) = _route(live, "anthropic")
    llm = ChatOpenAI(model="pam", base_url=f"{live.server.url}/v1", api_key=live.key, max_retries=0, timeout=10)
    agent = llm.bind_tools([get_weather])

    messages = [HumanMessage("What is the weather in Paris?")]
    called = agent.invoke(messages)
    [call] = called.tool_calls
    assert call["name"] == "get_weather"
    messages += [called, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    answer = agent.invoke(messages)

    assert "It is 18 degrees in example." in answer.content
    assert answer.response_metadata["model_name"] == model.model_id

"""Tools, images, JSON output and optional parameters through the Anthropic adapter and the
real SDK against the simulator, read back from the answers and from the body the simulator got."""

import json

import anthropic
import pytest
from anthropic.types import (
    InputJSONDelta,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    ToolUseBlock,
)

from modelhub.providers.anthropic import EventReader
from modelhub.providers.base import (
    ChatRequest,
    ErrorKind,
    Image,
    Message,
    ProviderError,
    ResponseFormat,
    StreamEvent,
    Tool,
    ToolCall,
    ToolCallDelta,
)

from .conftest import KEY

WEATHER = Tool(
    "get_weather",
    "The weather in a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
    },
)
CLOCK = Tool("get_time")  # no description, no parameters
REPORT = {
    "type": "object",
    "properties": {"summary": {"type": "string"}, "score": {"type": "integer"}},
    "required": ["summary", "score"],
}
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
ASK = Message("user", "What is the weather in Paris?")
CALL = ToolCall("toolu_1", "get_weather", '{"city": "Paris", "unit": "c"}')
CALLED = Message("assistant", "", tool_calls=(CALL,))


def ask(*messages: Message, **fields) -> ChatRequest:
    return ChatRequest(messages=messages or (ASK,), **fields)


async def collect(adapter, model, request):
    *events, end = [event async for event in adapter.stream(model, request)]
    return events, end


def rebuilt_calls(events) -> dict[int, dict]:
    """The streamed tool calls, put together by index as an OpenAI client does."""
    calls: dict[int, dict] = {}
    for event in events:
        for delta in event.tool_calls:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += delta.name or ""
            call["arguments"] += delta.arguments
    return calls


# -- the tool loop --


async def test_tool_call_then_result_is_a_two_turn_loop(connect, sim):
    adapter, model = connect("anthropic")

    first = await adapter.chat(model, ask(tools=(WEATHER, CLOCK)))

    body = sim.calls[-1].body
    assert body["tools"] == [
        {"name": "get_weather", "input_schema": WEATHER.parameters, "description": "The weather in a city."},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in body
    assert first.finish_reason == "tool_calls"
    (call,) = first.tool_calls
    assert call.name == "get_weather" and call.id.startswith("toolu_sim")
    assert json.loads(call.arguments) == {"city": "example", "unit": "c"}

    history = (ASK, Message("assistant", "", tool_calls=(call,)), Message("tool", "18 C, sunny", tool_call_id=call.id))
    second = await adapter.chat(model, ask(*history, tools=(WEATHER, CLOCK)))

    assert second.finish_reason == "stop" and second.tool_calls == ()
    assert second.text.endswith("The tool returned: 18 C, sunny")
    messages = sim.calls[-1].body["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": call.id, "name": "get_weather", "input": json.loads(call.arguments)}],
    }
    assert messages[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C, sunny"}],
    }


async def test_consecutive_tool_results_make_one_user_turn_that_a_user_message_joins(connect, sim):
    adapter, model = connect("anthropic")
    calls = (CALL, ToolCall("toolu_2", "get_time", ""))
    history = (
        ASK,
        Message("assistant", "Checking both.", tool_calls=calls),
        Message("tool", "18 C", tool_call_id="toolu_1"),
        Message("tool", "noon", tool_call_id="toolu_2"),
        Message("user", "Also: is that warm?"),
    )

    result = await adapter.chat(model, ask(*history, tools=(WEATHER, CLOCK)))

    assert result.text.endswith("The tool returned: 18 C noon")
    assistant, results = sim.calls[-1].body["messages"][1:]
    assert assistant["content"] == [
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris", "unit": "c"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
    ]
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "noon"},
            {"type": "text", "text": "Also: is that warm?"},
        ],
    }


async def test_streamed_tool_call_is_rebuilt_and_numbered_from_zero(connect, sim):
    adapter, model = connect("anthropic")
    plain = await adapter.chat(model, ask(tools=(WEATHER,)))

    events, end = await collect(adapter, model, ask(tools=(WEATHER,)))

    # Unforced, the simulated Claude says a word first: its tool_use block is block 1, the call index 0.
    assert "".join(e.text for e in events) == "I'll use get_weather."
    ((index, call),) = rebuilt_calls(events).items()
    assert index == 0 and call["id"].startswith("toolu_sim") and call["name"] == "get_weather"
    assert call["arguments"] == plain.tool_calls[0].arguments
    starts = [delta for e in events for delta in e.tool_calls if delta.id]
    assert len(starts) == 1 and len([e for e in events if e.tool_calls]) > 2  # arguments come in fragments
    assert end.finish_reason == "tool_calls"
    assert end.input_tokens and end.output_tokens


async def test_streamed_forced_call_comes_without_text(connect, sim):
    adapter, model = connect("anthropic")

    events, end = await collect(adapter, model, ask(tools=(WEATHER, CLOCK), tool_choice="required"))

    assert [e.text for e in events if e.text] == []
    assert rebuilt_calls(events)[0]["name"] == "get_weather"

    forced = ask(tools=(CLOCK,), tool_choice="function", tool_choice_name="get_time")
    events, end = await collect(adapter, model, forced)

    ((index, call),) = rebuilt_calls(events).items()
    assert (index, call["name"], call["arguments"]) == (0, "get_time", "{}")
    assert end.finish_reason == "tool_calls"


@pytest.mark.parametrize(
    "output, expected", [(None, StreamEvent(tool_calls=(ToolCallDelta(0, arguments="{}"),))), ("n", "{}")]
)
def test_a_streamed_call_whose_input_never_comes_gets_an_empty_object(output, expected):
    """The API may stream a call without arguments as no fragment but an empty one (the
    simulator always sends some): the call, or the JSON answer, still gets an object."""
    reader, end = EventReader(output), StreamEvent(last=True)
    block = ToolUseBlock(id="toolu_x", name="n", input={}, type="tool_use")
    empty = InputJSONDelta(partial_json="", type="input_json_delta")

    pieces = [
        reader.apply(RawContentBlockStartEvent(type="content_block_start", index=0, content_block=block), end),
        reader.apply(RawContentBlockDeltaEvent(type="content_block_delta", index=0, delta=empty), end),
        reader.apply(RawContentBlockStopEvent(type="content_block_stop", index=0), end),
    ]

    assert pieces[1:] == [None, expected]


async def test_the_simulator_stream_is_what_the_sdk_accumulates(simulator, sim):
    client = anthropic.AsyncAnthropic(base_url=simulator.base_url("anthropic"), api_key=KEY, max_retries=0)
    tool = {"name": "get_weather", "input_schema": WEATHER.parameters}
    try:
        async with client.messages.stream(
            model="claude-haiku-4-5-20250514",
            max_tokens=100,
            messages=[{"role": "user", "content": "Weather?"}],
            tools=[tool],
        ) as stream:
            message = await stream.get_final_message()
    finally:
        await client.close()

    text, use = message.content
    assert text.type == "text" and use.type == "tool_use" and message.stop_reason == "tool_use"
    assert (use.name, use.input) == ("get_weather", {"city": "example", "unit": "c"})


# -- tool_choice and parallel calls --


@pytest.mark.parametrize(
    "choice, name, sent, called",
    [
        ("auto", None, {"type": "auto"}, "get_weather"),
        ("required", None, {"type": "any"}, "get_weather"),
        ("function", "get_time", {"type": "tool", "name": "get_time"}, "get_time"),
        ("none", None, {"type": "none"}, None),
    ],
)
async def test_tool_choice_reaches_the_wire(connect, sim, choice, name, sent, called):
    adapter, model = connect("anthropic")

    result = await adapter.chat(model, ask(tools=(WEATHER, CLOCK), tool_choice=choice, tool_choice_name=name))

    assert sim.calls[-1].body["tool_choice"] == sent
    assert [call.name for call in result.tool_calls] == ([called] if called else [])
    assert result.finish_reason == ("tool_calls" if called else "stop")


@pytest.mark.parametrize(
    "choice, sent",
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", {"type": "any", "disable_parallel_tool_use": True}),
        ("none", {"type": "none"}),
    ],
)
async def test_parallel_tool_calls_off_disables_parallel_use(connect, sim, choice, sent):
    adapter, model = connect("anthropic")

    await adapter.chat(model, ask(tools=(WEATHER,), tool_choice=choice, parallel_tool_calls=False))

    assert sim.calls[-1].body["tool_choice"] == sent


async def test_tool_choice_is_not_sent_without_tools(connect, sim):
    adapter, model = connect("anthropic")

    await adapter.chat(model, ask(tool_choice="none", parallel_tool_calls=False))

    assert "tool_choice" not in sim.calls[-1].body and "tools" not in sim.calls[-1].body


# -- images --


async def test_inline_image_goes_as_base64_before_the_text(connect, sim):
    adapter, model = connect("anthropic")
    image = Image(f"data:image/png;base64,{PIXEL}", "image/png", PIXEL)

    result = await adapter.chat(model, ask(Message("user", "What is this?", images=(image, image))))

    assert result.text.endswith("I received 2 images.")
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    assert sim.calls[-1].body["messages"][0]["content"] == [block, block, {"type": "text", "text": "What is this?"}]


async def test_image_url_goes_as_a_url_source(connect, sim):
    adapter, model = connect("anthropic")
    url = "https://example.com/cat.png"

    result = await adapter.chat(model, ask(Message("user", "", images=(Image(url),))))

    assert result.text.endswith("I received 1 image.")
    assert sim.calls[-1].body["messages"][0]["content"] == [{"type": "image", "source": {"type": "url", "url": url}}]


async def test_image_of_a_type_the_api_refuses_is_a_bad_request(connect, sim):
    adapter, model = connect("anthropic")

    with pytest.raises(ProviderError) as caught:
        await adapter.chat(model, ask(Message("user", "Hm", images=(Image("data:", "image/bmp", "Qk0="),))))

    assert caught.value.kind is ErrorKind.BAD_REQUEST and caught.value.status == 400
    assert "media_type" in caught.value.message


# -- JSON output --


async def test_json_schema_answer_comes_back_as_text(connect, sim):
    adapter, model = connect("anthropic")

    result = await adapter.chat(model, ask(response_format=ResponseFormat("json_schema", REPORT, "weather report!")))

    assert json.loads(result.text) == {"summary": "example", "score": 1}
    assert (result.finish_reason, result.tool_calls) == ("stop", ())
    body = sim.calls[-1].body
    assert [(t["name"], t["input_schema"]) for t in body["tools"]] == [("weather_report_", REPORT)]
    assert body["tool_choice"] == {"type": "tool", "name": "weather_report_", "disable_parallel_tool_use": True}


async def test_json_object_answer_comes_back_as_text(connect, sim):
    adapter, model = connect("anthropic")

    result = await adapter.chat(model, ask(response_format=ResponseFormat("json_object")))

    assert isinstance(json.loads(result.text), dict) and result.finish_reason == "stop"
    assert sim.calls[-1].body["tools"][0]["input_schema"] == {"type": "object"}


async def test_streamed_json_answer_is_text(connect, sim):
    adapter, model = connect("anthropic")

    events, end = await collect(adapter, model, ask(response_format=ResponseFormat("json_schema", REPORT)))

    assert json.loads("".join(e.text for e in events)) == {"summary": "example", "score": 1}
    assert not any(e.tool_calls for e in events)
    assert end.finish_reason == "stop"


async def test_json_output_with_the_callers_tools_lets_the_model_call_any(connect, sim):
    adapter, model = connect("anthropic")
    named_like_it = Tool("response", parameters={"type": "object"})

    result = await adapter.chat(
        model, ask(tools=(WEATHER, named_like_it), response_format=ResponseFormat("json_schema", REPORT))
    )

    body = sim.calls[-1].body
    assert [t["name"] for t in body["tools"]] == ["get_weather", "response", "response_2"]
    assert body["tool_choice"] == {"type": "any"}
    assert [call.name for call in result.tool_calls] == ["get_weather"]


async def test_json_output_when_the_caller_allows_no_tool_forces_the_output_tool(connect, sim):
    adapter, model = connect("anthropic")

    result = await adapter.chat(
        model, ask(tools=(WEATHER,), tool_choice="none", response_format=ResponseFormat("json_schema", REPORT))
    )

    assert sim.calls[-1].body["tool_choice"]["name"] == "response"
    assert json.loads(result.text) == {"summary": "example", "score": 1} and result.tool_calls == ()


# -- optional parameters and max output --


async def test_optional_params_sent_where_taken_and_dropped_where_not(connect, sim):
    adapter, model = connect("anthropic")

    await adapter.chat(
        model,
        ask(
            stop=("END",),
            top_p=0.9,
            user="user-7",
            seed=3,
            presence_penalty=0.5,
            frequency_penalty=0.5,
            metadata={"team": "a"},
        ),
    )

    body = sim.calls[-1].body
    assert (body["stop_sequences"], body["top_p"], body["metadata"]) == (["END"], 0.9, {"user_id": "user-7"})
    for absent in ("stop", "seed", "presence_penalty", "frequency_penalty", "user"):
        assert absent not in body
    assert "team" not in json.dumps(body)


async def test_optional_params_the_model_refuses_are_not_sent(connect, sim):
    adapter, model = connect("anthropic", model_fields={"params_unsupported": frozenset({"top_p", "stop"})})

    await adapter.chat(model, ask(stop=("END",), top_p=0.9, temperature=0.2))

    body = sim.calls[-1].body
    assert "top_p" not in body and "stop_sequences" not in body and body["temperature"] == 0.2


async def test_max_tokens_defaults_to_the_model_maximum(connect, sim):
    adapter, model = connect("anthropic", model_fields={"max_output_tokens": 12_345})

    await adapter.chat(model, ask())

    assert sim.calls[-1].body["max_tokens"] == 12_345


# -- bad input: a clear error, from the hub or from the (simulated) API --


@pytest.mark.parametrize(
    "history, said",
    [
        ((ASK, Message("assistant", "", tool_calls=(ToolCall("t", "get_weather", "[1]"),))), "JSON object"),
        ((ASK, CALLED, Message("tool", "18 C")), "tool_call_id"),
    ],
)
async def test_malformed_tool_history_fails_before_any_call(connect, sim, history, said):
    adapter, model = connect("anthropic")

    with pytest.raises(ProviderError) as caught:
        await adapter.chat(model, ask(*history, tools=(WEATHER,)))

    assert caught.value.kind is ErrorKind.BAD_REQUEST and said in caught.value.message
    assert sim.calls == []


@pytest.mark.parametrize(
    "history, said",
    [
        ((ASK, CALLED, Message("tool", "18 C", tool_call_id="toolu_9")), "toolu_9"),
        ((ASK, CALLED, Message("user", "Well?")), "without `tool_result`"),
        ((ASK, CALLED, ASK, Message("tool", "18 C", tool_call_id="toolu_1")), "without `tool_result`"),
    ],
)
async def test_tool_results_that_do_not_pair_with_calls_are_refused_by_the_api(connect, sim, history, said):
    adapter, model = connect("anthropic")

    with pytest.raises(ProviderError) as caught:
        await adapter.chat(model, ask(*history, tools=(WEATHER,)))

    assert caught.value.kind is ErrorKind.BAD_REQUEST and caught.value.status == 400
    assert said in caught.value.message


@pytest.mark.parametrize(
    "extra, said",
    [
        ({"tools": [{"name": "get_weather"}]}, "input_schema: Field required"),
        ({"tools": [{"name": "bad name", "input_schema": {"type": "object"}}]}, "String should match pattern"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
                ]
            },
            "Input tag 'file'",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, "must be non-empty"),
        (
            {
                "tools": [{"name": "a", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "tool", "name": "b"},
            },
            "not found",
        ),
    ],
)
async def test_simulator_answers_the_apis_400_for_shapes_it_refuses(simulator, sim, extra, said):
    client = anthropic.AsyncAnthropic(base_url=simulator.base_url("anthropic"), api_key=KEY, max_retries=0)
    params = {"model": "claude-haiku-4-5-20250514", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
    try:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(**{**params, **extra})
    finally:
        await client.close()

    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert said in caught.value.body["error"]["message"]

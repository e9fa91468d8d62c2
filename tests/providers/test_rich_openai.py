"""Tools, images, JSON output and optional parameters through the OpenAI adapter (and the
OpenAI-compatible one, which shares it), read off what the simulator's OpenAI wire
received and answered; plus the simulator's own shapes through the raw openai SDK."""

import json

import openai
import pytest

from modelhub.providers.base import (
    ChatRequest,
    ErrorKind,
    Image,
    Message,
    ProviderError,
    ResponseFormat,
    Tool,
    ToolCall,
)

from .conftest import KEY, MODEL_IDS, chat_request

OPENAI_KINDS = ("openai", "openai_compatible")
WEATHER = Tool(
    "get_weather",
    "The weather in a city",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}, "day": {}},
        "required": ["city", "unit"],
    },
)
TIME = Tool("get_time", parameters={"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]})
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
INLINE = Image(f"data:image/png;base64,{PIXEL}", "image/png", PIXEL, detail="low")
REMOTE = Image("https://example.com/cat.png")
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture(params=OPENAI_KINDS)
def openai_kind(request):
    return request.param


def ask(*messages: Message, **fields) -> ChatRequest:
    return ChatRequest(messages=(Message("user", "What is the weather in Paris?"), *messages), **fields)


def answered(call: ToolCall, result: str = "18 C and sunny") -> tuple[Message, Message]:
    """The history after the model's call: its assistant turn, then the tool's result."""
    return Message("assistant", "", tool_calls=(call,)), Message("tool", result, tool_call_id=call.id, name=call.name)


async def collect(adapter, model, request):
    return [event async for event in adapter.stream(model, request)]


# -- the tool loop --


async def test_tool_call_then_result_is_acknowledged(connect, openai_kind, sim):
    adapter, model = connect(openai_kind)

    first = await adapter.chat(model, ask(tools=(WEATHER,)))

    (call,) = first.tool_calls
    assert (first.finish_reason, first.text, call.name) == ("tool_calls", "", "get_weather")
    assert call.id.startswith("call_") and json.loads(call.arguments) == {"city": "example", "unit": "c"}
    assert sim.calls[-1].body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER.parameters,
            },
        }
    ]

    second = await adapter.chat(model, ask(*answered(call), tools=(WEATHER,)))

    assert second.text.endswith("The tool returned: 18 C and sunny") and second.finish_reason == "stop"
    assert second.tool_calls == ()
    assert sim.calls[-1].body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": call.arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"},
    ]


async def test_two_calls_answered_by_consecutive_tool_messages(connect, sim):
    adapter, model = connect("openai")
    calls = (ToolCall("call_a", "get_weather", '{"city": "Paris"}'), ToolCall("call_b", "get_time", '{"zone": "CET"}'))
    history = (
        Message("assistant", "Checking both.", tool_calls=calls),
        Message("tool", "18 C", tool_call_id="call_a", name="get_weather"),
        Message("tool", "14:00", tool_call_id="call_b", name="get_time"),
    )

    result = await adapter.chat(model, ask(*history, tools=(WEATHER, TIME)))

    assert result.text.endswith("The tool returned: 14:00")
    sent = sim.calls[-1].body["messages"]
    assert sent[1]["content"] == "Checking both." and [c["id"] for c in sent[1]["tool_calls"]] == ["call_a", "call_b"]
    assert [(m["role"], m["tool_call_id"]) for m in sent[2:]] == [("tool", "call_a"), ("tool", "call_b")]


async def test_tool_result_for_an_unknown_call_is_a_bad_request(connect, sim):
    adapter, model = connect("openai")
    call = ToolCall("call_a", "get_weather", "{}")
    history = (Message("assistant", "", tool_calls=(call,)), Message("tool", "18 C", tool_call_id="call_zzz"))

    with pytest.raises(ProviderError) as caught:
        await adapter.chat(model, ask(*history, tools=(WEATHER,)))

    assert caught.value.kind is ErrorKind.BAD_REQUEST and "call_zzz" in caught.value.message


async def test_streamed_tool_call_rebuilds_the_call(connect, openai_kind, sim):
    adapter, model = connect(openai_kind)

    *pieces, end = await collect(adapter, model, ask(tools=(WEATHER,)))

    deltas = [delta for event in pieces for delta in event.tool_calls]
    assert all(not event.text for event in pieces) and len(deltas) > 2
    first, *fragments = deltas
    assert first.index == 0 and first.name == "get_weather" and first.id.startswith("call_")
    assert all((d.index, d.id, d.name) == (0, None, None) for d in fragments)
    assert json.loads("".join(d.arguments for d in deltas)) == {"city": "example", "unit": "c"}
    assert end.last and end.finish_reason == "tool_calls"
    assert end.input_tokens and end.output_tokens


async def test_streamed_text_after_a_tool_result(connect, sim):
    adapter, model = connect("openai")
    call = (await adapter.chat(model, ask(tools=(WEATHER,)))).tool_calls[0]

    *pieces, end = await collect(adapter, model, ask(*answered(call), tools=(WEATHER,)))

    assert "".join(e.text for e in pieces).endswith("The tool returned: 18 C and sunny")
    assert all(not e.tool_calls for e in pieces) and end.finish_reason == "stop"


async def test_sdk_stream_accumulator_rebuilds_the_simulators_tool_call(simulator, sim):
    client = openai.AsyncOpenAI(base_url=simulator.base_url("openai"), api_key=KEY, max_retries=0)
    strict_tool = {"type": "function", "function": {"name": "get_weather", "parameters": PERSON, "strict": True}}
    try:
        async with client.chat.completions.stream(
            model=MODEL_IDS["openai"], messages=[{"role": "user", "content": "Who?"}], tools=[strict_tool]
        ) as stream:
            completion = await stream.get_final_completion()
    finally:
        await client.close()

    choice = completion.choices[0]
    (call,) = choice.message.tool_calls
    assert choice.finish_reason == "tool_calls" and choice.message.role == "assistant"
    assert call.id.startswith("call_sim") and call.id.count("call_sim") == 1
    assert (call.type, call.function.name) == ("function", "get_weather")
    assert call.function.parsed_arguments == json.loads(call.function.arguments) == {"name": "example", "age": 1}


# -- tool choice --


@pytest.mark.parametrize(
    "choice, name, wire",
    [
        ("auto", None, "auto"),
        ("required", None, "required"),
        ("function", "get_time", {"type": "function", "function": {"name": "get_time"}}),
    ],
)
async def test_tool_choice_reaches_the_wire(connect, openai_kind, sim, choice, name, wire):
    adapter, model = connect(openai_kind)

    result = await adapter.chat(model, ask(tools=(WEATHER, TIME), tool_choice=choice, tool_choice_name=name))

    assert sim.calls[-1].body["tool_choice"] == wire
    assert result.tool_calls[0].name == (name or "get_weather")


async def test_tool_choice_none_answers_text(connect, sim):
    adapter, model = connect("openai")

    result = await adapter.chat(model, ask(tools=(WEATHER,), tool_choice="none"))

    assert sim.calls[-1].body["tool_choice"] == "none"
    assert result.tool_calls == () and result.finish_reason == "stop" and result.text


async def test_tool_choice_function_without_a_name_is_a_bad_request(connect, sim):
    adapter, model = connect("openai")

    with pytest.raises(ProviderError) as caught:
        await adapter.chat(model, ask(tools=(WEATHER,), tool_choice="function"))

    assert caught.value.kind is ErrorKind.BAD_REQUEST and sim.calls == []


@pytest.mark.parametrize("parallel", [True, False])
async def test_parallel_tool_calls_sent_beside_tools(connect, openai_kind, sim, parallel):
    adapter, model = connect(openai_kind)

    await adapter.chat(model, ask(tools=(WEATHER,), parallel_tool_calls=parallel))

    assert sim.calls[-1].body["parallel_tool_calls"] is parallel


async def test_tool_settings_absent_without_tools(connect, sim):
    adapter, model = connect("openai")

    result = await adapter.chat(model, ask(tool_choice="auto", parallel_tool_calls=False))

    body = sim.calls[-1].body
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & body.keys()
    assert result.finish_reason == "stop"


async def test_tool_strict_and_bare_tool_shapes(connect, sim):
    adapter, model = connect("openai")
    strict = Tool("lookup", parameters=PERSON, strict=True)

    await adapter.chat(model, ask(tools=(strict, Tool("ping"))))

    assert sim.calls[-1].body["tools"] == [
        {"type": "function", "function": {"name": "lookup", "parameters": PERSON, "strict": True}},
        {"type": "function", "function": {"name": "ping"}},
    ]


# -- images --


async def test_inline_image_goes_as_a_data_url_part(connect, openai_kind, sim):
    adapter, model = connect(openai_kind)

    result = await adapter.chat(model, ChatRequest(messages=(Message("user", "What is this?", images=(INLINE,)),)))

    assert result.text.endswith("I received 1 image.")
    assert sim.calls[-1].body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": INLINE.url, "detail": "low"}},
                {"type": "text", "text": "What is this?"},
            ],
        }
    ]


async def test_https_image_url_goes_as_is_to_openai(connect, sim):
    adapter, model = connect("openai")
    images = (REMOTE, INLINE)

    result = await adapter.chat(model, ChatRequest(messages=(Message("user", "", images=images),)))

    assert result.text.endswith("I received 2 images.")
    assert sim.calls[-1].body["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": INLINE.url, "detail": "low"}},
    ]


async def test_https_image_url_is_refused_for_openai_compatible_hosts(connect, sim):
    adapter, model = connect("openai_compatible")
    request = ChatRequest(messages=(Message("user", "What is this?", images=(REMOTE,)),))

    with pytest.raises(ProviderError) as caught:
        await adapter.chat(model, request)
    with pytest.raises(ProviderError) as streamed:
        await collect(adapter, model, request)

    assert caught.value.kind is streamed.value.kind is ErrorKind.BAD_REQUEST
    assert sim.calls == []


# -- JSON output --


async def test_json_object_answers_a_json_object(connect, openai_kind, sim):
    adapter, model = connect(openai_kind)

    result = await adapter.chat(model, chat_request("Answer in JSON", response_format=ResponseFormat("json_object")))

    assert sim.calls[-1].body["response_format"] == {"type": "json_object"}
    assert isinstance(json.loads(result.text), dict)


async def test_json_schema_answers_the_schemas_required_keys(connect, openai_kind, sim):
    adapter, model = connect(openai_kind)
    response_format = ResponseFormat("json_schema", PERSON, name="person", strict=True)

    result = await adapter.chat(model, chat_request("Who?", response_format=response_format))

    assert sim.calls[-1].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON, "strict": True},
    }
    assert json.loads(result.text).keys() == {"name", "age"}


async def test_json_schema_streamed(connect, sim):
    adapter, model = connect("openai")

    *pieces, end = await collect(adapter, model, chat_request(response_format=ResponseFormat("json_schema", PERSON)))

    assert json.loads("".join(e.text for e in pieces)) == {"name": "example", "age": 1}
    assert sim.calls[-1].body["response_format"]["json_schema"] == {"name": "response", "schema": PERSON}


# -- optional parameters and the output limit --

EVERY_PARAM = {
    "stop": ("END",),
    "top_p": 0.9,
    "seed": 7,
    "presence_penalty": 0.1,
    "frequency_penalty": 0.2,
    "user": "user-42",
    "metadata": {"team": "pam"},
}


async def test_openai_takes_every_optional_param(connect, sim):
    adapter, model = connect("openai")

    await adapter.chat(model, chat_request(**EVERY_PARAM))

    body = sim.calls[-1].body
    assert {name: body[name] for name in EVERY_PARAM} == {**EVERY_PARAM, "stop": ["END"]}


async def test_openai_compatible_drops_user_and_metadata(connect, sim):
    adapter, model = connect("openai_compatible")

    await adapter.chat(model, chat_request(**EVERY_PARAM))

    body = sim.calls[-1].body
    assert "user" not in body and "metadata" not in body
    assert (body["stop"], body["top_p"], body["seed"]) == (["END"], 0.9, 7)
    assert (body["presence_penalty"], body["frequency_penalty"]) == (0.1, 0.2)


async def test_params_the_model_does_not_take_are_absent(connect, openai_kind, sim):
    adapter, model = connect(openai_kind, model_fields={"params_unsupported": frozenset({"stop", "top_p"})})

    await adapter.chat(model, chat_request(**EVERY_PARAM))

    body = sim.calls[-1].body
    assert "stop" not in body and "top_p" not in body and body["seed"] == 7


async def test_unset_optional_params_are_absent(connect, openai_kind, sim):
    adapter, model = connect(openai_kind)

    await adapter.chat(model, chat_request())

    assert sim.calls[-1].body.keys() == {"model", "messages"}


async def test_no_output_limit_sent_when_the_caller_gave_none(connect, openai_kind, sim):
    adapter, model = connect(openai_kind, model_fields={"max_tokens_param": "max_completion_tokens"})

    await collect(adapter, model, chat_request())

    body = sim.calls[-1].body
    assert "max_tokens" not in body and "max_completion_tokens" not in body


# -- the simulator's OpenAI wire, through the raw SDK --

USER = {"role": "user", "content": "Hi"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
TOOLS = [{"type": "function", "function": {"name": "f"}}]


@pytest.mark.parametrize(
    "fields, phrase",
    [
        (
            {"messages": [USER, {"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "tool_call_id": "x"}]},
            "'tool_call_id' of 'x' not found",
        ),
        ({"messages": [USER, {"role": "tool", "tool_call_id": "call_1", "content": "1"}]}, "must be a response"),
        ({"messages": [USER, {"role": "assistant", "tool_calls": [CALL]}, USER]}, "did not have response messages"),
        (
            {"messages": [USER, {"role": "assistant", "tool_calls": [{**CALL, "type": None}]}]},
            "tool_calls[0].type",
        ),
        (
            {
                "messages": [
                    USER,
                    {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {}}}]},
                ]
            },
            "arguments': expected a string",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "image_url.url"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "data": "x"}]}]}, "Invalid value: 'image'"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}, "json_schema.name"),
        ({"tool_choice": "auto"}, "only allowed when 'tools' are specified"),
        ({"parallel_tool_calls": False}, "only allowed when 'tools' are specified"),
        ({"tools": []}, "empty array"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice"),
    ],
)
async def test_simulator_rejects_what_openai_rejects(simulator, sim, fields, phrase):
    client = openai.AsyncOpenAI(base_url=simulator.base_url("openai"), api_key=KEY, max_retries=0)
    try:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(**{"model": MODEL_IDS["openai"], "messages": [USER], **fields})
    finally:
        await client.close()

    assert phrase in caught.value.message
    assert caught.value.body["type"] == "invalid_request_error"


async def test_simulator_tool_call_ids_are_unique_per_answer(simulator, sim):
    client = openai.AsyncOpenAI(base_url=simulator.base_url("openai_compatible"), api_key=KEY, max_retries=0)
    try:
        answers = [
            await client.chat.completions.create(model=MODEL_IDS["openai_compatible"], messages=[USER], tools=TOOLS)
            for _ in range(2)
        ]
    finally:
        await client.close()

    messages = [answer.choices[0].message for answer in answers]
    assert all(m.content is None and m.tool_calls[0].id.startswith("call_sim") for m in messages)
    assert messages[0].tool_calls[0].id != messages[1].tool_calls[0].id

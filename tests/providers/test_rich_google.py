"""Gemini beyond text: tools, images, JSON output and optional parameters, through google-genai
against the simulator's Gemini wire (and the schema cleaner on its own)."""

import base64
import copy
import json
import re

import aiohttp
import pytest
from google.genai import types

from modelhub.providers import google
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
)

from .conftest import KEY, model_spec, provider_spec

WEATHER = Tool(
    "get_weather",
    "The weather in a city.",
    {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "city": {"type": "string", "examples": ["Paris"]},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)
TIME = Tool("get_time", "The time in a zone.", {"type": "object", "properties": {"zone": {"type": "string"}}})
MINTED = r"call_[0-9a-f]{24}"
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\nnot really a png").decode()
SIGNED_MODEL, UNSIGNED_MODEL = "gemini-2.5-flash", "gemini-1.5-flash-latest"


def ask(*messages: Message, **fields) -> ChatRequest:
    return ChatRequest(messages=messages or (Message("user", "What is the weather in Paris?"),), **fields)


def config_of(sim) -> dict:
    return sim.calls[-1].body.get("generationConfig", {})


async def collect(adapter, model, request) -> tuple[list, StreamEvent]:
    events = [event async for event in adapter.stream(model, request)]
    return events[:-1], events[-1]


async def post(simulator, body: dict, model: str = SIGNED_MODEL) -> tuple[int, dict]:
    url = f"{simulator.url}/gemini/v1beta/models/{model}:generateContent"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers={"x-goog-api-key": KEY}) as response,
    ):
        return response.status, await response.json(content_type=None)


# -- tools --


async def test_tool_loop_two_turns(connect, sim):
    adapter, model = connect("google")

    first = await adapter.chat(model, ask(tools=(WEATHER, TIME)))

    (call,) = first.tool_calls
    assert first.finish_reason == "tool_calls" and first.text == ""
    assert call.name == "get_weather" and re.fullmatch(MINTED + "~ts~[A-Za-z0-9_-]+", call.id)
    assert set(json.loads(call.arguments)) == {"city", "unit"}
    (declarations,) = [tool["functionDeclarations"] for tool in sim.calls[-1].body["tools"]]
    assert [d["name"] for d in declarations] == ["get_weather", "get_time"]
    assert declarations[0]["description"] == "The weather in a city."
    assert declarations[0]["parameters_json_schema"] == {  # cleaned: no $schema, no examples
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    }

    history = (
        Message("user", "What is the weather in Paris?"),
        Message("assistant", "", tool_calls=first.tool_calls),
        Message("tool", "22 C and sunny", tool_call_id=call.id),
    )
    second = await adapter.chat(model, ask(*history, tools=(WEATHER, TIME)))

    assert second.finish_reason == "stop" and not second.tool_calls
    assert "22 C and sunny" in second.text
    model_turn, results = sim.calls[-1].body["contents"][1:]
    assert model_turn["role"] == "model"
    (part,) = model_turn["parts"]
    assert part["functionCall"] == {
        "id": call.id.partition("~ts~")[0],
        "name": "get_weather",
        "args": json.loads(call.arguments),
    }
    assert base64.urlsafe_b64decode(part["thoughtSignature"]) == google.split_call_id(call.id)[1]
    assert results == {
        "role": "user",
        "parts": [
            {
                "functionResponse": {
                    "id": call.id.partition("~ts~")[0],
                    "name": "get_weather",
                    "response": {"result": "22 C and sunny"},
                }
            }
        ],
    }


async def test_consecutive_tool_results_make_one_user_content(connect, sim):
    adapter, model = connect("google", model_fields={"model_id": UNSIGNED_MODEL})
    calls = (ToolCall("call_a", "get_weather", '{"city": "Paris"}'), ToolCall("call_b", "get_time", "{}"))
    history = (
        Message("user", "Weather and time?"),
        Message("assistant", "Looking.", tool_calls=calls),
        Message("tool", '{"temp": 22}', tool_call_id="call_a"),
        Message("tool", "noon", tool_call_id="call_b", name="get_time"),
    )

    result = await adapter.chat(model, ask(*history, tools=(WEATHER, TIME)))

    contents = sim.calls[-1].body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"][0] == {"text": "Looking."}
    assert [p["functionCall"]["name"] for p in contents[1]["parts"][1:]] == ["get_weather", "get_time"]
    assert [p["functionResponse"] for p in contents[2]["parts"]] == [
        {"id": "call_a", "name": "get_weather", "response": {"temp": 22}},  # a JSON object goes as it is
        {"id": "call_b", "name": "get_time", "response": {"result": "noon"}},
    ]
    assert "noon" in result.text  # the simulator acknowledges the last result


async def test_tool_result_for_no_known_call_is_bad_request(connect, sim):
    adapter, model = connect("google")
    history = (Message("user", "Hi"), Message("tool", "22 C", tool_call_id="call_nowhere"))

    with pytest.raises(ProviderError) as caught:
        await adapter.chat(model, ask(*history, tools=(WEATHER,)))

    assert caught.value.kind is ErrorKind.BAD_REQUEST and "call_nowhere" in caught.value.message
    assert not sim.calls


async def test_tool_loop_streamed(connect, sim):
    adapter, model = connect("google")

    events, end = await collect(adapter, model, ask(tools=(WEATHER,)))

    (event,) = events  # Gemini sends a call whole: one delta with id, name and arguments
    (delta,) = event.tool_calls
    assert (delta.index, delta.name) == (0, "get_weather") and re.fullmatch(MINTED + "~ts~.+", delta.id)
    assert set(json.loads(delta.arguments)) == {"city", "unit"}
    assert end.last and end.finish_reason == "tool_calls"
    assert end.input_tokens and end.output_tokens

    call = ToolCall(delta.id, delta.name, delta.arguments)
    history = (Message("user", "Weather?"), Message("assistant", "", tool_calls=(call,)))
    events, end = await collect(adapter, model, ask(*history, Message("tool", "rain", tool_call_id=call.id)))

    assert "rain" in "".join(e.text for e in events) and end.finish_reason == "stop"


async def test_a_call_from_another_model_gets_the_documented_stand_in_signature(connect, sim, simulator):
    """A tool history made by another model (a failover mid tool loop) has no signature: a
    signing model refuses such a call, so the adapter sends Google's documented stand-in."""
    history = (
        Message("user", "Weather?"),
        Message("assistant", "", tool_calls=(ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),)),
        Message("tool", "22 C", tool_call_id="toolu_1"),
    )
    adapter, signing = connect("google")

    result = await adapter.chat(signing, ask(*history, tools=(WEATHER,)))

    assert "22 C" in result.text
    sent = sim.calls[-1].body["contents"][1]["parts"][0]
    assert sent["thoughtSignature"] == "skip_thought_signature_validator"
    del sent["thoughtSignature"]  # the same request without it: refused, as the real API does
    status, body = await post(simulator, sim.calls[-1].body)
    assert status == 400 and "thought_signature" in body["error"]["message"]


async def test_damaged_signature_is_refused(connect, sim):
    adapter, model = connect("google")
    first = await adapter.chat(model, ask(tools=(WEATHER,)))
    call = first.tool_calls[0]
    base_id, _, signature = call.id.partition("~ts~")
    damaged = ToolCall(f"{base_id}~ts~AAAA{signature[4:]}", call.name, call.arguments)
    history = (Message("user", "Weather?"), Message("assistant", "", tool_calls=(damaged,)))

    with pytest.raises(ProviderError) as caught:
        await adapter.chat(model, ask(*history, Message("tool", "22 C", tool_call_id=damaged.id)))

    assert caught.value.kind is ErrorKind.BAD_REQUEST and "signature" in caught.value.message


@pytest.mark.parametrize(
    ("choice", "name", "expected"),
    [
        ("auto", None, {"mode": "AUTO"}),
        ("none", None, {"mode": "NONE"}),
        ("required", None, {"mode": "ANY"}),
        ("function", "get_time", {"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
    ],
)
async def test_tool_choice_reaches_the_wire(connect, sim, choice, name, expected):
    adapter, model = connect("google")

    result = await adapter.chat(
        model, ask(tools=(WEATHER, TIME), tool_choice=choice, tool_choice_name=name, parallel_tool_calls=False)
    )

    body = sim.calls[-1].body
    assert body["toolConfig"] == {"functionCallingConfig": expected}
    assert "parallel" not in json.dumps(body)  # Gemini has no such switch
    if choice == "none":
        assert not result.tool_calls and result.finish_reason == "stop"
    else:
        assert result.tool_calls[0].name == (name or "get_weather")


async def test_no_tool_choice_sends_no_tool_config(connect, sim):
    adapter, model = connect("google")

    await adapter.chat(model, ask(tools=(Tool("ping"),)))

    body = sim.calls[-1].body
    assert "toolConfig" not in body
    assert body["tools"][0]["functionDeclarations"] == [
        {"name": "ping", "parameters_json_schema": {"type": "object", "properties": {}}}
    ]


async def test_schema_that_needs_cleaning_is_refused_raw_and_works_cleaned(connect, sim, simulator):
    schema = {
        "type": "object",
        "properties": {"place": {"$ref": "#/definitions/Place", "description": "Where."}},
        "required": ["place"],
        "definitions": {"Place": {"type": "object", "properties": {"city": {"const": "Paris"}}}},
    }
    raw = {"contents": [{"role": "user", "parts": [{"text": "Go"}]}]}

    status, answer = await post(
        simulator, {**raw, "tools": [{"functionDeclarations": [{"name": "go", "parametersJsonSchema": schema}]}]}
    )
    openapi_status, openapi_answer = await post(
        simulator, {**raw, "tools": [{"functionDeclarations": [{"name": "go", "parameters": schema}]}]}
    )
    adapter, model = connect("google")
    result = await adapter.chat(model, ask(tools=(Tool("go", "", schema),)))

    assert (status, answer["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "$ref" in answer["error"]["message"]
    assert openapi_status == 400 and "Unknown name" in openapi_answer["error"]["message"]
    assert result.tool_calls[0].name == "go" and "place" in json.loads(result.tool_calls[0].arguments)
    sent = sim.calls[-1].body["tools"][0]["functionDeclarations"][0]["parameters_json_schema"]
    assert sent["properties"]["place"] == {"anyOf": [{"$ref": "#/$defs/Place"}], "description": "Where."}
    assert sent["$defs"]["Place"]["properties"]["city"] == {"enum": ["Paris"]}


@pytest.mark.parametrize(
    ("part", "words"),
    [
        ({"functionResponse": {"response": {"result": "x"}}}, "Name cannot be empty"),
        ({"functionResponse": {"name": "f", "response": "22 C"}}, "google.protobuf.Struct"),
        ({"fileData": {"fileUri": "https://example.com/cat.png", "mimeType": "image/png"}}, "Unsupported file uri"),
        ({"inlineData": {"mimeType": "image/gif", "data": PIXEL}}, "Unsupported MIME type: image/gif"),
        ({"inlineData": {"mimeType": "image/png", "data": "not base64!"}}, "Base64 decoding failed"),
    ],
)
async def test_simulator_refuses_parts_the_api_refuses(sim, simulator, part, words):
    status, answer = await post(simulator, {"contents": [{"role": "user", "parts": [part]}]})

    assert status == 400 and answer["error"]["status"] == "INVALID_ARGUMENT"
    assert words in answer["error"]["message"]


@pytest.mark.parametrize(
    ("calling", "words"),
    [
        ({"mode": "AUTO", "allowedFunctionNames": ["go"]}, "only allowed when mode is ANY"),
        ({"mode": "ANY", "allowedFunctionNames": ["went"]}, "went is not a declared function"),
        ({"mode": "SOMETIMES"}, "FunctionCallingConfig.Mode"),
    ],
)
async def test_simulator_refuses_tool_configs_the_api_refuses(sim, simulator, calling, words):
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Go"}]}],
        "tools": [{"functionDeclarations": [{"name": "go"}]}],
        "toolConfig": {"functionCallingConfig": calling},
    }

    status, answer = await post(simulator, body)

    assert status == 400 and words in answer["error"]["message"]


# -- images --


async def test_inline_image_goes_as_inline_data_before_the_text(connect, sim):
    adapter, model = connect("google", model_fields={"supports_vision": True})
    image = Image(f"data:image/png;base64,{PIXEL}", "image/png", PIXEL)

    result = await adapter.chat(model, ask(Message("user", "What is this?", images=(image, image))))

    parts = sim.calls[-1].body["contents"][0]["parts"]
    assert [base64.urlsafe_b64decode(p["inlineData"]["data"]) for p in parts[:2]] == [base64.b64decode(PIXEL)] * 2
    assert parts[0]["inlineData"]["mime_type"] == "image/png" and parts[2] == {"text": "What is this?"}
    assert "I received 2 images" in result.text


@pytest.mark.parametrize(
    "image", [Image("https://example.com/cat.png"), Image("data:image/gif;base64,R0lG", "image/gif", "R0lG")]
)
async def test_image_gemini_cannot_take_is_bad_request_before_any_call(connect, sim, image):
    adapter, model = connect("google", model_fields={"supports_vision": True})

    with pytest.raises(ProviderError) as caught:
        await adapter.chat(model, ask(Message("user", "What is this?", images=(image,))))

    assert caught.value.kind is ErrorKind.BAD_REQUEST
    assert not sim.calls


# -- JSON output --


async def test_json_object_sets_only_the_mime_type(connect, sim):
    adapter, model = connect("google")

    result = await adapter.chat(model, ask(response_format=ResponseFormat("json_object")))

    assert config_of(sim) == {"responseMimeType": "application/json"}
    assert isinstance(json.loads(result.text), dict)


async def test_json_schema_goes_cleaned_as_response_json_schema(connect, sim):
    adapter, model = connect("google")
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "minLength": 1}, "age": {"type": "integer", "exclusiveMinimum": 0}},
        "required": ["name", "age"],
    }

    result = await adapter.chat(model, ask(response_format=ResponseFormat("json_schema", schema, "person", True)))

    assert config_of(sim) == {
        "responseMimeType": "application/json",
        "responseJsonSchema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 1}},
            "required": ["name", "age"],
        },
    }
    assert set(json.loads(result.text)) == {"name", "age"}


async def test_json_schema_streamed(connect, sim):
    adapter, model = connect("google")
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}

    events, end = await collect(adapter, model, ask(response_format=ResponseFormat("json_schema", schema)))

    assert json.loads("".join(e.text for e in events)) == {"ok": True} and end.finish_reason == "stop"


# -- optional parameters and max output --

OPTIONAL = {
    "stop": ("END", "STOP"),
    "top_p": 0.9,
    "seed": 7,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.25,
    "user": "user-4821",
    "metadata": {"trace": "trace-9137"},
}


async def test_optional_params_sent_where_gemini_takes_them(connect, sim):
    adapter, model = connect("google")

    await adapter.chat(model, ask(**OPTIONAL))

    assert config_of(sim) == {
        "stopSequences": ["END", "STOP"],
        "topP": 0.9,
        "seed": 7,
        "presencePenalty": 0.5,
        "frequencyPenalty": 0.25,
    }
    assert "user-4821" not in json.dumps(sim.calls[-1].body) and "trace-9137" not in json.dumps(sim.calls[-1].body)


async def test_optional_params_the_model_does_not_take_are_absent(connect, sim):
    adapter, model = connect("google", model_fields={"params_unsupported": frozenset({"seed", "stop", "top_p"})})

    await adapter.chat(model, ask(**OPTIONAL))

    assert config_of(sim) == {"presencePenalty": 0.5, "frequencyPenalty": 0.25}


async def test_max_output_sent_only_when_asked(connect, sim):
    adapter, model = connect("google")

    await adapter.chat(model, ask())
    unasked = config_of(sim)
    await adapter.chat(model, ask(max_tokens=99))

    assert "maxOutputTokens" not in unasked and config_of(sim) == {"maxOutputTokens": 99}


# -- answers the simulator does not give --


def gemini_response(parts: list[dict], finish: str | None = "STOP"):
    return types.GenerateContentResponse._from_response(
        response={
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3},
        },
        kwargs={},
    )


def test_text_and_calls_with_ids_of_their_own():
    signature = base64.b64encode(b"\x00\xffsig").decode()
    response = gemini_response(
        [
            {"text": "Let me check."},
            {"functionCall": {"id": "g-1", "name": "a", "args": {"x": 1}}, "thoughtSignature": signature},
            {"functionCall": {"name": "b"}},
        ]
    )

    result = google.generate_result(response, model_spec(provider_spec("google")))

    first, second = result.tool_calls
    assert (result.text, result.finish_reason) == ("Let me check.", "tool_calls")
    assert first.id.partition("~ts~")[0] == "g-1" and google.split_call_id(first.id) == ("g-1", b"\x00\xffsig")
    assert (first.name, first.arguments, second.name, second.arguments) == ("a", '{"x": 1}', "b", "{}")
    assert re.fullmatch(MINTED, second.id) and google.split_call_id(second.id) == (second.id, None)


def test_stream_numbers_calls_across_chunks_and_keeps_their_finish():
    reader, end = google.StreamedAnswer(), StreamEvent(last=True)

    text = reader.apply(gemini_response([{"text": "Checking."}], finish=None), end)
    first = reader.apply(gemini_response([{"functionCall": {"name": "a", "args": {}}}]), end)
    second = reader.apply(gemini_response([{"text": " And"}, {"functionCall": {"name": "b", "args": {}}}]), end)

    assert text == "Checking." and isinstance(first, StreamEvent) and isinstance(second, StreamEvent)
    assert [d.index for d in first.tool_calls + second.tool_calls] == [0, 1]
    assert second.text == " And" and end.finish_reason == "tool_calls"


# -- the schema cleaner --


def test_schema_cleaner_drops_what_gemini_does_not_take():
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "strict": True,
        "properties": {
            "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}, "uniqueItems": True},
            "mode": {"not": {"const": "x"}, "examples": ["y"], "default": "y", "type": ["string", "null"]},
            "flag": {"enum": [True, False]},
            "level": {"enum": [1, 2, 3]},
        },
    }

    assert google.gemini_schema(schema) == {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "mode": {"type": ["string", "null"]},
            "flag": {},
            "level": {"enum": [1, 2, 3]},
        },
    }


def test_schema_cleaner_rewrites_what_has_an_equivalent():
    schema = {
        "allOf": [
            {
                "properties": {"a": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}},
                "required": ["a"],
            },
            {"properties": {"b": {"type": "number", "exclusiveMinimum": 0.5}}, "required": ["b"]},
        ],
        "type": "object",
        "properties": {"c": {"allOf": [{"$ref": "#/definitions/C"}], "description": "See C."}},
        "definitions": {"C": {"const": "only"}},
        "required": ["c"],
    }

    assert google.gemini_schema(schema) == {
        "type": "object",
        "properties": {
            "c": {"anyOf": [{"$ref": "#/$defs/C"}], "description": "See C."},
            "a": {"type": "integer", "minimum": 1, "maximum": 9},
            "b": {"type": "number", "minimum": 0.5},
        },
        "required": ["c", "a", "b"],
        "$defs": {"C": {"enum": ["only"]}},
    }


def test_schema_cleaner_keeps_property_names_and_the_callers_schema():
    schema = {
        "type": "object",
        "properties": {
            "const": {"type": "string"},
            "$schema": {"type": "string"},
            "tuple": {"items": [{"type": "string"}]},
        },
        "required": ["const"],
    }
    before = copy.deepcopy(schema)

    cleaned = google.gemini_schema(schema)

    assert list(cleaned["properties"]) == ["const", "$schema", "tuple"]
    assert cleaned["properties"]["tuple"] == {"prefixItems": [{"type": "string"}]}
    assert schema == before

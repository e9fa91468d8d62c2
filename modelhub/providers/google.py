"""Google Gemini generateContent, through google-genai (``client.aio`` on the hub's guarded aiohttp
session, providers/transport.py).

The hub speaks OpenAI's shapes; this module translates them. Assistant tool calls become
``function_call`` parts and consecutive tool results one user content of ``function_response``
parts; images go inline (Gemini fetches no URLs). Tool parameter schemas go as
``parameters_json_schema`` and JSON output schemas as ``response_json_schema``: the JSON Schema
fields, which google-genai 3.4 passes to the wire as given, where ``parameters`` and
``response_schema`` are parsed into its OpenAPI ``Schema`` (which fails on type lists, ``const``,
``$ref``...). Both JSON Schema fields first go through ``gemini_schema``, for what Gemini
documents it takes.

Gemini gives a function call no id, or one of its own: the hub mints ``call_`` + 24 hex digits
where none came. Gemini 2.5 and later put a thought signature on function calls that must come
back with the call on the next turn; OpenAI's shape has no place for it, so it travels in the
tool call's id: ``{id}~ts~{base64url signature}``."""

from __future__ import annotations

import base64
import binascii
import json
import os

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from . import errors, transport
from .base import (
    Adapter,
    ChatRequest,
    ChatResult,
    ErrorKind,
    Image,
    ListedModel,
    Message,
    ModelSpec,
    ProviderError,
    ProviderSpec,
    ResponseFormat,
    StreamEvent,
    Tool,
    ToolCall,
    ToolCallDelta,
    max_tokens_sent,
    temperature_for,
)
from .sdk_stream import sdk_stream

API_VERSION = "v1beta"
ROLES = {"user": "user", "assistant": "model"}
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}
# The optional parameters GenerationConfig takes (stop as stop_sequences). It has no field for
# user or metadata (labels are Vertex-only): those are dropped.
SUPPORTED_PARAMS = frozenset({"stop", "top_p", "seed", "presence_penalty", "frequency_penalty"})
PARAM_NAMES = {"stop": "stop_sequences"}
# Gemini has no parallel-calls switch: parallel_tool_calls is dropped.
TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}
NO_PARAMETERS = {"type": "object", "properties": {}}
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
SIGNATURE_MARK = "~ts~"
# The value Google documents for a function call whose signature is unknown (a tool history
# from another model: a failover mid tool loop); the SDK sends bytes URL-safe base64-encoded,
# so these bytes reach the wire as that very string.
SIGNATURE_UNKNOWN = base64.urlsafe_b64decode("skip_thought_signature_validator")
# google-genai lets raw aiohttp, httpx2, json and pydantic errors through unwrapped.
CALL_ERRORS = (genai_errors.APIError, *errors.TRANSPORT_ERRORS, ValueError)


class GoogleAdapter(Adapter):
    def __init__(self, provider: ProviderSpec):
        super().__init__(provider)
        key = errors.require_api_key(provider)
        # The SDK's own aiohttp session had limit=0 and a 4 MiB read buffer: kept, plus the guard.
        self._session = transport.session_create(limit=0, read_bufsize=2**22)
        self._client = genai.Client(api_key=key, http_options=http_options(provider, self._session))
        self._generate = self._client.aio.models.generate_content
        self._generate_stream = self._client.aio.models.generate_content_stream

    async def chat(self, model: ModelSpec, request: ChatRequest) -> ChatResult:
        params = generate_params(model, request)
        try:
            response = await self._generate(**params)
        except CALL_ERRORS as exc:
            raise errors.from_google(exc, secret=self.provider.api_key) from exc
        return generate_result(response, model)

    def stream(self, model: ModelSpec, request: ChatRequest):
        return sdk_stream(
            lambda: self._generate_stream(**generate_params(model, request)),
            StreamedAnswer().apply,
            model_id=model.model_id,
            expected=CALL_ERRORS,
            convert=lambda exc: errors.from_google(exc, secret=self.provider.api_key),
        )

    async def list_models(self) -> list[ListedModel]:
        try:
            return [listed_model(m) async for m in await self._client.aio.models.list()]
        except CALL_ERRORS as exc:
            raise errors.from_google(exc, secret=self.provider.api_key) from exc

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        self._client.close()
        await self._session.close()  # a session given to the SDK is the giver's to close


def http_options(provider: ProviderSpec, session) -> types.HttpOptions:
    # attempts=1 also stops the aio client's own hidden retry of a refused connection,
    # which sleeps 1-10 s first. Timeout is in milliseconds.
    return types.HttpOptions(
        base_url=provider.base_url or None,
        api_version=API_VERSION,
        timeout=max(1, round(provider.timeout * 1000)),
        retry_options=types.HttpRetryOptions(attempts=1),
        async_client_args={"allow_redirects": False},
        aiohttp_client=session,
    )


# -- request --


def generate_params(model: ModelSpec, request: ChatRequest) -> dict:
    # A dict, not GenerateContentConfig: the SDK deep-copies a config object it is given.
    config: dict = {"automatic_function_calling": {"disable": True}}
    limit = max_tokens_sent(model, request)
    if limit is not None:
        config["max_output_tokens"] = limit
    if request.system:
        config["system_instruction"] = request.system
    temperature = temperature_for(model, request)
    if temperature is not None:
        config["temperature"] = temperature
    for name, value in request.optional_params(model, SUPPORTED_PARAMS).items():
        config[PARAM_NAMES.get(name, name)] = list(value) if name == "stop" else value
    if request.tools:
        config["tools"] = [{"function_declarations": [function_declaration(tool) for tool in request.tools]}]
        calling = function_calling_config(request)
        if calling is not None:
            config["tool_config"] = {"function_calling_config": calling}
    if request.response_format is not None:
        config.update(json_output(request.response_format))
    return {"model": model.model_id, "contents": request_contents(request.messages), "config": config}


def function_declaration(tool: Tool) -> dict:
    """A function Gemini may call; one without parameters still gets an empty object schema
    (mode ANY refuses a declaration that has none)."""
    schema = gemini_schema(tool.parameters) if tool.parameters else NO_PARAMETERS
    declaration = {"name": tool.name, "parameters_json_schema": schema}
    if tool.description:
        declaration["description"] = tool.description
    return declaration


def function_calling_config(request: ChatRequest) -> dict | None:
    mode = TOOL_MODES.get(request.tool_choice or "")
    if mode is None:
        return None
    if request.tool_choice != "function":
        return {"mode": mode}
    if not request.tool_choice_name:
        raise ProviderError(ErrorKind.BAD_REQUEST, "tool_choice names no function")
    return {"mode": mode, "allowed_function_names": [request.tool_choice_name]}


def json_output(response_format: ResponseFormat) -> dict:
    """JSON mode: the mime type, plus the schema when one is given (json_object has none)."""
    config: dict = {"response_mime_type": "application/json"}
    if response_format.type == "json_schema" and response_format.schema:
        config["response_json_schema"] = gemini_schema(response_format.schema)
    return config


def request_contents(messages: tuple[Message, ...]) -> list[dict]:
    """The conversation as Gemini contents. Consecutive tool results make one user content;
    a result names its function, found by its call's id when the message does not say."""
    contents: list[dict] = []
    names: dict[str, str] = {}  # tool call id -> function name
    previous = None
    for message in messages:
        role = message.role
        if role == "tool":
            part = {"function_response": function_response(message, names)}
            if previous == "tool":
                contents[-1]["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
        elif role == "assistant":
            contents.append({"role": "model", "parts": model_parts(message, names)})
        else:
            contents.append({"role": ROLES.get(role, role), "parts": user_parts(message)})
        previous = role
    return contents


def user_parts(message: Message) -> list[dict]:
    if not message.images:
        return [{"text": message.content}]
    parts = [image_part(image) for image in message.images]
    if message.content:
        parts.append({"text": message.content})
    return parts


def image_part(image: Image) -> dict:
    """An inline image. Gemini reads only its own Files API and Cloud Storage URIs, and the
    hub fetches no URLs, so an https image cannot go (the router skips Gemini for them)."""
    if not image.inline:
        raise ProviderError(ErrorKind.BAD_REQUEST, "Gemini takes images inline only (data: URLs), not image URLs")
    if image.media_type not in IMAGE_TYPES:
        raise ProviderError(ErrorKind.BAD_REQUEST, f"Gemini does not take {image.media_type} images")
    return {"inline_data": {"mime_type": image.media_type, "data": image.data}}


def model_parts(message: Message, names: dict[str, str]) -> list[dict]:
    parts = [{"text": message.content}] if message.content or not message.tool_calls else []
    for call in message.tool_calls:
        names[call.id] = call.name
        parts.append(function_call_part(call))
    return parts


def function_call_part(call: ToolCall) -> dict:
    """A call the model made, with its thought signature back on the part (the documented
    stand-in when its id carries none: Gemini 3 refuses a call without one)."""
    try:
        args = json.loads(call.arguments or "{}")
    except ValueError:
        args = None
    if not isinstance(args, dict):
        raise ProviderError(ErrorKind.BAD_REQUEST, f"tool call of {call.name!r}: arguments must be a JSON object")
    call_id, signature = split_call_id(call.id)
    function_call: dict = {"name": call.name, "args": args}
    if call_id:
        function_call["id"] = call_id
    return {"function_call": function_call, "thought_signature": signature or SIGNATURE_UNKNOWN}


def function_response(message: Message, names: dict[str, str]) -> dict:
    call_id = message.tool_call_id or ""
    name = message.name or names.get(call_id)
    base_id = call_id.partition(SIGNATURE_MARK)[0]
    if not name:
        raise ProviderError(
            ErrorKind.BAD_REQUEST, f"tool result {base_id!r}: Gemini needs its function name, and no call has that id"
        )
    response: dict = {"name": name, "response": tool_response(message.content)}
    if base_id:
        response["id"] = base_id
    return response


def tool_response(content: str) -> dict:
    """Gemini's function response is an object: a result that is a JSON object goes as it is,
    any other as {"result": text}."""
    if content.lstrip().startswith("{"):
        try:
            value = json.loads(content)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    return {"result": content}


# -- tool call ids --


def tool_call_id(call_id: str | None, signature: bytes | None) -> str:
    """The hub's id for a function call: Gemini's id, or a minted one, then its thought signature."""
    base_id = call_id or "call_" + os.urandom(12).hex()
    if not signature:
        return base_id
    return base_id + SIGNATURE_MARK + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def split_call_id(call_id: str) -> tuple[str, bytes | None]:
    """(the call's own id, its thought signature or None) out of a hub tool call id."""
    base_id, mark, encoded = call_id.partition(SIGNATURE_MARK)
    if not mark:
        return base_id, None
    try:
        return base_id, base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        raise ProviderError(ErrorKind.BAD_REQUEST, f"tool call {base_id!r}: its thought signature is damaged") from None


# -- JSON Schema for Gemini --

# The keywords Gemini documents for its JSON Schema fields; others are ignored at best.
SCHEMA_KEYWORDS = frozenset(
    {
        "$id",
        "$defs",
        "$ref",
        "$anchor",
        "type",
        "format",
        "title",
        "description",
        "enum",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "anyOf",
        "oneOf",
        "properties",
        "additionalProperties",
        "required",
        "propertyOrdering",
    }
)
_SCHEMA_MAPS = ("properties", "$defs")  # name -> schema
_SCHEMA_LISTS = ("anyOf", "oneOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties")


def gemini_schema(schema: dict) -> dict:
    """A JSON schema Gemini takes, the caller's left untouched. Gemini's JSON Schema fields take
    only the keywords in SCHEMA_KEYWORDS, enums of strings and numbers, and a ``$ref`` with no
    sibling but ``$`` keywords. Where a keyword has an equivalent it is rewritten: ``const`` to a
    one-value enum, ``exclusiveMinimum``/``exclusiveMaximum`` to inclusive bounds (exact for
    integers), ``allOf`` merged into its schema, ``definitions`` to ``$defs``, a tuple's list
    ``items`` to ``prefixItems``, and a ``$ref`` with siblings to a one-branch ``anyOf``. The
    rest (``$schema``, ``not``, ``pattern``, ``uniqueItems``, ``examples``, ``default``...) is
    dropped: the model sees a looser schema, never a stricter one."""
    return _clean(schema) if isinstance(schema, dict) else schema


def _clean(schema: dict) -> dict:
    schema = _merged(schema)
    out: dict = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS:
            out[key] = {name: _clean_value(sub) for name, sub in value.items()} if isinstance(value, dict) else value
        elif key in _SCHEMA_LISTS:
            out[key] = [_clean_value(sub) for sub in value] if isinstance(value, list) else value
        elif key in _SCHEMA_VALUES:
            out[key] = _clean_value(value)
        elif key == "enum":
            if isinstance(value, list) and value and all(_is_enum_value(v) for v in value):
                out[key] = value
        elif key == "$ref":
            out[key] = value.replace("#/definitions/", "#/$defs/", 1) if isinstance(value, str) else value
        elif key in SCHEMA_KEYWORDS:
            out[key] = value
    _rewrite_constants(schema, out)
    if "$ref" in out and any(not key.startswith("$") for key in out):
        out["anyOf"] = [{"$ref": out.pop("$ref")}]
    return out


def _clean_value(value):
    return _clean(value) if isinstance(value, dict) else value


def _merged(schema: dict) -> dict:
    """``allOf`` folded into its schema (properties and required joined, the first value of
    any other keyword kept), ``definitions`` renamed, a tuple's ``items`` list named ``prefixItems``."""
    if not ("allOf" in schema or "definitions" in schema or isinstance(schema.get("items"), list)):
        return schema
    merged = {key: value for key, value in schema.items() if key not in ("allOf", "definitions")}
    if isinstance(schema.get("definitions"), dict):
        merged["$defs"] = {**schema["definitions"], **(merged.get("$defs") or {})}
    if isinstance(merged.get("items"), list):
        merged.setdefault("prefixItems", merged.pop("items"))
    for part in schema.get("allOf") or ():
        if not isinstance(part, dict):
            continue
        part = _merged(part)
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                merged["properties"] = {**value, **(merged.get("properties") or {})}
            elif key == "required" and isinstance(value, list):
                merged["required"] = list(dict.fromkeys([*(merged.get("required") or []), *value]))
            else:
                merged.setdefault(key, value)
    return merged


def _rewrite_constants(schema: dict, out: dict) -> None:
    """``const`` to ``enum``; exclusive bounds to inclusive ones where no inclusive one is set."""
    if "const" in schema and "enum" not in out and _is_enum_value(schema["const"]):
        out["enum"] = [schema["const"]]
    integer = schema.get("type") == "integer"
    for exclusive, inclusive, step in (("exclusiveMinimum", "minimum", 1), ("exclusiveMaximum", "maximum", -1)):
        bound = schema.get(exclusive)
        if inclusive not in out and _is_number(bound):
            out[inclusive] = bound + step if integer and isinstance(bound, int) else bound


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_enum_value(value) -> bool:
    return isinstance(value, str) or _is_number(value)


# -- answer --


def generate_result(response, model: ModelSpec) -> ChatResult:
    try:
        candidate, usage = response.candidates[0], response.usage_metadata
        reason = getattr(candidate.finish_reason, "value", candidate.finish_reason)
        parts = candidate.content.parts if candidate.content else None  # none when blocked
        calls = tool_calls(parts, 0)
        return ChatResult(
            text=parts_text(parts),
            model=response.model_version or model.model_id,
            input_tokens=usage.prompt_token_count or 0,
            output_tokens=(usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0),
            finish_reason=finish_reason(reason, bool(calls)),
            tool_calls=tuple(ToolCall(d.id or "", d.name or "", d.arguments) for d in calls),
        )
    except (AttributeError, IndexError, TypeError) as exc:
        raise errors.malformed(exc) from exc


def finish_reason(reason: str | None, called: bool) -> str | None:
    """OpenAI's finish reason; Gemini says STOP also when the model called functions."""
    if called and reason == "STOP":
        return "tool_calls"
    return FINISH_REASONS.get(reason, reason.lower()) if reason else None


class StreamedAnswer:
    """One streamed answer: numbers its tool calls from 0 across chunks."""

    __slots__ = ("calls",)

    def __init__(self):
        self.calls = 0

    def apply(self, response, end: StreamEvent) -> str | StreamEvent | None:
        """One streamed response: its text is returned, with the function calls it holds (each
        comes whole in one chunk) as tool-call deltas; model, usage (cumulative in Gemini's
        chunks) and finish reason go on ``end``."""
        usage = response.usage_metadata
        if usage is not None and usage.prompt_token_count is not None:
            end.input_tokens = usage.prompt_token_count
            end.output_tokens = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
        end.model = response.model_version or end.model
        if not response.candidates:
            return None
        candidate = response.candidates[0]
        parts = candidate.content.parts if candidate.content else None
        deltas = tool_calls(parts, self.calls) if parts else ()
        self.calls += len(deltas)
        reason = getattr(candidate.finish_reason, "value", candidate.finish_reason)
        if reason:
            end.finish_reason = finish_reason(reason, self.calls > 0)
        text = parts_text(parts)
        return StreamEvent(text, tool_calls=deltas) if deltas else text


def tool_calls(parts, first: int) -> tuple[ToolCallDelta, ...]:
    """The parts' function calls, whole, numbered from ``first``."""
    calls = [part for part in parts or () if part.function_call is not None]
    return tuple(
        ToolCallDelta(
            first + i,
            tool_call_id(part.function_call.id, part.thought_signature),
            part.function_call.name or "",
            json.dumps(part.function_call.args or {}),
        )
        for i, part in enumerate(calls)
    )


def listed_model(model) -> ListedModel:
    return ListedModel(
        model.name.removeprefix("models/"), model.display_name or "", model.input_token_limit, model.output_token_limit
    )


def parts_text(parts) -> str:
    return "".join(p.text for p in parts or () if p.text and not p.thought)

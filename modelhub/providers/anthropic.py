"""Anthropic Messages, through the official SDK on its aiohttp transport (over the hub's guarded
session, providers/transport.py).

The hub speaks OpenAI's shapes; this module translates them. Tool calls become ``tool_use``
blocks and tool results ``tool_result`` blocks (consecutive results in one user turn), images
``image`` blocks. JSON output goes through a tool: the schema is the input schema of a tool
the model is made to call, and that call's input comes back as the answer's text. This works
on every Claude model that takes tools, where the API's own ``output_config`` format does not."""

from __future__ import annotations

import json
import re

import anthropic
from anthropic._vendor.httpx_aiohttp import AiohttpTransport

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
    StreamEvent,
    Tool,
    ToolCall,
    ToolCallDelta,
    max_tokens_for,
    temperature_for,
)
from .sdk_stream import sdk_stream

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "model_context_window_exceeded": "length",
}
# The optional parameters the Messages API takes: stop (as stop_sequences), top_p, and user
# (as metadata.user_id). Its metadata holds nothing else, so OpenAI's free-form metadata is
# dropped, as are seed and the penalties, which it has no field for.
SUPPORTED_PARAMS = frozenset({"stop", "top_p", "user"})
TOOL_CHOICES = {"auto": "auto", "required": "any", "function": "tool", "none": "none"}
NO_TOOL_NAME = re.compile(r"[^a-zA-Z0-9_-]")  # the API's tool names: ^[a-zA-Z0-9_-]{1,64}$
OUTPUT_TOOL_DESCRIPTION = "Give your answer to the user as this tool's input: it is the whole answer."
ANY_OBJECT = {"type": "object"}
NO_PARAMETERS = {"type": "object", "properties": {}}


class AnthropicAdapter(Adapter):
    def __init__(self, provider: ProviderSpec):
        super().__init__(provider)
        self._client = anthropic.AsyncAnthropic(
            api_key=errors.require_api_key(provider),
            base_url=provider.base_url or None,
            timeout=provider.timeout,
            max_retries=0,
            http_client=anthropic.DefaultAioHttpClient(
                follow_redirects=False,
                transport=transport.sdk_transport(AiohttpTransport, limits=anthropic.DEFAULT_CONNECTION_LIMITS),
            ),
        )
        self._create = self._client.messages.create

    async def chat(self, model: ModelSpec, request: ChatRequest) -> ChatResult:
        output = output_tool(request)
        params = message_params(model, request, output)
        try:
            message = await self._create(**params)
        except (anthropic.AnthropicError, ValueError) as exc:
            raise errors.from_anthropic(exc, secret=self.provider.api_key) from exc
        return message_result(message, model, output)

    def stream(self, model: ModelSpec, request: ChatRequest):
        # Raw events rather than messages.stream(): no snapshot is accumulated per event.
        output = output_tool(request)
        return sdk_stream(
            lambda: self._create(**message_params(model, request, output), stream=True),
            EventReader(output).apply,
            model_id=model.model_id,
            expected=(anthropic.AnthropicError, ValueError, *errors.TRANSPORT_ERRORS),
            convert=lambda exc: errors.from_anthropic(exc, secret=self.provider.api_key),
        )

    async def list_models(self) -> list[ListedModel]:
        try:
            return [ListedModel(m.id, m.display_name or "") async for m in self._client.models.list()]
        except (anthropic.AnthropicError, ValueError) as exc:
            raise errors.from_anthropic(exc, secret=self.provider.api_key) from exc

    async def aclose(self) -> None:
        await self._client.close()


def bad_request(message: str) -> ProviderError:
    return ProviderError(ErrorKind.BAD_REQUEST, message)


# -- request --


def message_params(model: ModelSpec, request: ChatRequest, output: str | None = None) -> dict:
    """The Messages API call for ``request``; ``output``: the JSON output tool's name, if any."""
    params = {
        "model": model.model_id,
        "max_tokens": max_tokens_for(model, request),
        "messages": messages_param(request.messages),
    }
    if request.system:
        params["system"] = request.system
    extra: dict = {}
    temperature = temperature_for(model, request)
    if temperature is not None:  # the 2.x SDK dropped the temperature argument
        extra["temperature"] = temperature
    if request.tools or output:
        params["tools"] = tools_param(request, output)
        choice = tool_choice_param(request, output)
        if choice is not None:
            params["tool_choice"] = choice
    optional = request.optional_params(model, SUPPORTED_PARAMS)
    if optional:
        _add_optional(params, extra, optional)
    if extra:
        params["extra_body"] = extra
    return params


def _add_optional(params: dict, extra: dict, optional: dict) -> None:
    if "stop" in optional:
        params["stop_sequences"] = list(optional["stop"])
    if "user" in optional:
        params["metadata"] = {"user_id": optional["user"]}
    if "top_p" in optional:  # like temperature, no SDK argument
        extra["top_p"] = optional["top_p"]


def messages_param(messages: tuple[Message, ...]) -> list[dict]:
    """The turns. Consecutive tool messages make one user turn of tool_result blocks (the API
    wants every result of an assistant turn in the next message), which a user message right
    after them joins, its blocks after the results as the API requires."""
    turns = []
    results: list | None = None  # the content of the user turn gathering tool results
    for message in messages:
        if message.role == "tool":
            if results is None:
                results = []
                turns.append({"role": "user", "content": results})
            results.append(_tool_result(message))
            continue
        if results is not None and message.role == "user":
            results.extend(_user_blocks(message))
        else:
            turns.append({"role": message.role, "content": _content(message)})
        results = None
    return turns


def _content(message: Message) -> str | list[dict]:
    """Plain text stays a string (the common case); images and tool calls make blocks."""
    if message.tool_calls:
        text = [{"type": "text", "text": message.content}] if message.content else []
        return text + [_tool_use(call) for call in message.tool_calls]
    if message.images:
        return _user_blocks(message)
    return message.content


def _user_blocks(message: Message) -> list[dict]:
    blocks = [_image(image) for image in message.images]
    if message.content:  # the API refuses an empty text block
        blocks.append({"type": "text", "text": message.content})
    return blocks


def _image(image: Image) -> dict:
    if image.inline:
        source = {"type": "base64", "media_type": image.media_type, "data": image.data}
    else:  # the API fetches an https URL itself
        source = {"type": "url", "url": image.url}
    return {"type": "image", "source": source}


def _tool_use(call: ToolCall) -> dict:
    """An earlier call: OpenAI's arguments are a JSON string, Anthropic's input an object."""
    try:
        arguments = json.loads(call.arguments) if call.arguments else {}
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise bad_request(f"tool call {call.id!r}: arguments must be a JSON object")
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": arguments}


def _tool_result(message: Message) -> dict:
    if not message.tool_call_id:
        raise bad_request("a tool message needs the tool_call_id of the call it answers")
    return {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}


def tools_param(request: ChatRequest, output: str | None) -> list[dict]:
    """The caller's tools, then the JSON output tool. ``strict`` is not sent: the API takes it
    only on models with structured outputs, which the registry does not tell apart."""
    tools = [_tool(tool) for tool in request.tools]
    if output is not None:
        format_ = request.response_format
        schema = format_.schema if format_ is not None and format_.type == "json_schema" else None
        tools.append({"name": output, "description": OUTPUT_TOOL_DESCRIPTION, "input_schema": schema or ANY_OBJECT})
    return tools


def _tool(tool: Tool) -> dict:
    param = {"name": tool.name, "input_schema": tool.parameters or NO_PARAMETERS}
    if tool.description:
        param["description"] = tool.description
    return param


def tool_choice_param(request: ChatRequest, output: str | None) -> dict | None:
    """The caller's choice in Anthropic's shape (None: the API's default, auto). With JSON
    output, the model must call a tool: the output tool itself when the caller sent no tools or
    allowed none of them; the caller's function when the caller named one; otherwise any tool
    ("any"), so that it either calls one of the caller's tools or answers through the output tool."""
    choice = request.tool_choice
    if output is not None:
        if not request.tools or choice == "none":
            return {"type": "tool", "name": output, "disable_parallel_tool_use": True}
        if choice != "function":
            choice = "required"
    elif choice is None and request.parallel_tool_calls is not False:
        return None
    type_ = TOOL_CHOICES.get(choice or "auto")
    if type_ is None:
        raise bad_request(f"unknown tool_choice {choice!r}")
    param: dict = {"type": type_}
    if type_ == "tool":
        if not request.tool_choice_name:
            raise bad_request('tool_choice "function" needs the function\'s name')
        param["name"] = request.tool_choice_name
    if request.parallel_tool_calls is False and type_ != "none":
        param["disable_parallel_tool_use"] = True
    return param


def output_tool(request: ChatRequest) -> str | None:
    """The name of the tool that carries JSON output (None without response_format): the
    format's name as the API allows tool names, numbered when a caller's tool has it."""
    format_ = request.response_format
    if format_ is None:
        return None
    base = NO_TOOL_NAME.sub("_", format_.name)[:64] or "response"
    taken = {tool.name for tool in request.tools}
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base[:60]}_{number}"
    return name


# -- answer --


def message_result(message, model: ModelSpec, output: str | None = None) -> ChatResult:
    """The answer; a call of the JSON output tool becomes the text (its input as JSON)."""
    try:
        texts, calls, answer = [], [], None
        for block in message.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use" and block.name == output:
                answer = json.dumps(block.input)
            elif block.type == "tool_use":
                calls.append(ToolCall(block.id, block.name, json.dumps(block.input)))
        text = "".join(texts) if answer is None else answer
        return ChatResult(
            text=text,
            model=message.model or model.model_id,
            input_tokens=message.usage.input_tokens,
            output_tokens=message.usage.output_tokens,
            finish_reason=_finish(message.stop_reason, bool(calls)),
            tool_calls=tuple(calls),
        )
    except (AttributeError, TypeError) as exc:
        raise errors.malformed(exc) from exc


def _finish(stop_reason: str | None, called: bool) -> str | None:
    """OpenAI's finish reason; a tool_use stop with no caller's tool called is the JSON answer's end."""
    if stop_reason == "tool_use" and not called:
        return "stop"
    return FINISH_REASONS.get(stop_reason or "", stop_reason)


class EventReader:
    """One stream's events, read in order. Anthropic numbers content blocks, text blocks too;
    the hub numbers tool calls from 0: ``calls`` maps a tool_use block's index to its call's
    (None for the JSON output tool, whose input streams as the answer's text)."""

    __slots__ = ("output", "calls", "called", "empty")

    def __init__(self, output: str | None):
        self.output = output
        self.calls: dict[int, int | None] = {}
        self.called = 0
        self.empty: set[int] = set()  # tool_use blocks no input fragment has reached yet

    def apply(self, event, end: StreamEvent) -> str | StreamEvent | None:
        """A text delta is returned, a tool call's start or fragment as an event; model,
        usage and stop reason go on ``end``."""
        kind = event.type
        if kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                return delta.text
            if delta.type == "input_json_delta" and delta.partial_json:
                return self._input(event.index, delta.partial_json)
        elif kind == "content_block_start":
            if event.content_block.type == "tool_use":
                return self._start(event.index, event.content_block)
        elif kind == "content_block_stop":
            if event.index in self.empty:  # a call without arguments still has an object
                return self._input(event.index, "{}")
        elif kind == "message_start":
            end.model = event.message.model or end.model
            end.input_tokens = event.message.usage.input_tokens
            end.output_tokens = event.message.usage.output_tokens
        elif kind == "message_delta":
            end.output_tokens = event.usage.output_tokens
            end.finish_reason = _finish(event.delta.stop_reason, self.called > 0)
        return None

    def _start(self, index: int, block) -> StreamEvent | None:
        self.empty.add(index)
        if block.name == self.output:
            self.calls[index] = None
            return None
        call = self.calls[index] = self.called
        self.called += 1
        return StreamEvent(tool_calls=(ToolCallDelta(call, block.id, block.name),))

    def _input(self, index: int, fragment: str) -> str | StreamEvent:
        self.empty.discard(index)
        call = self.calls[index]  # a fragment of a block never started: malformed (KeyError)
        if call is None:
            return fragment
        return StreamEvent(tool_calls=(ToolCallDelta(call, arguments=fragment),))

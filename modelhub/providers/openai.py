"""OpenAI Chat Completions, through the official SDK on its aiohttp transport (over the hub's
guarded session, providers/transport.py).

The hub's request types are OpenAI's shape, so requests go nearly verbatim: a plain text
message stays ``{"role", "content": str}`` (the hot path), and only messages with images,
tool calls or tool results are built part by part."""

from __future__ import annotations

# The SDK looks the legacy ``httpx`` module up in ``sys.modules`` on every request (to accept
# its types too) and reads attributes off it. google-genai imports that module, and may do so
# on another thread (the ASGI preload) while this one serves: a request then met it half
# imported and failed ("partially initialized module 'httpx' has no attribute 'Timeout'").
# Imported whole here, before any request through this adapter can run.
import httpx  # noqa: F401
import httpx2
import openai
from openai._vendor.httpx_aiohttp import AiohttpTransport

from . import errors, transport
from .base import (
    OPTIONAL_PARAMS,
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
from .relay import SseRelay
from .sdk_stream import sdk_stream

STREAM_OPTIONS = {"include_usage": True}
# The SDK's documented switch (``with_streaming_response``) for a response whose body it hands
# back unread, after its status checks.
RAW_STREAM = {"X-Stainless-Raw-Response": "stream"}
TOKEN_PARAMS = frozenset({"max_tokens", "max_completion_tokens"})
TOOL_CHOICES = frozenset({"auto", "none", "required"})

# One vocabulary for every adapter: OpenAI's.
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}


class OpenAIAdapter(Adapter):
    KEY_REQUIRED = True
    # OpenAI takes every optional parameter the hub knows, under the same names.
    SUPPORTED_PARAMS = frozenset(OPTIONAL_PARAMS)
    # OpenAI downloads https image URLs itself; hosts that cannot say so in a subclass.
    FETCHES_IMAGE_URLS = True

    def __init__(self, provider: ProviderSpec):
        super().__init__(provider)
        self._client = self.client_for(provider)
        self._completions_url = endpoint_url(self._client, "chat/completions")

    def client_for(self, provider: ProviderSpec) -> openai.AsyncOpenAI:
        key = errors.require_api_key(provider) if self.KEY_REQUIRED else provider.api_key
        return openai.AsyncOpenAI(
            api_key=key or "unused",
            base_url=provider.base_url or None,
            timeout=provider.timeout,
            max_retries=0,
            http_client=openai.DefaultAioHttpClient(
                follow_redirects=False,
                transport=transport.sdk_transport(AiohttpTransport, limits=openai.DEFAULT_CONNECTION_LIMITS),
            ),
        )

    async def chat(self, model: ModelSpec, request: ChatRequest) -> ChatResult:
        params = chat_params(model, request, self.SUPPORTED_PARAMS, self.FETCHES_IMAGE_URLS)
        try:
            completion = await self._post(params)
        except (openai.OpenAIError, ValueError) as exc:
            raise errors.from_openai(exc, secret=self.provider.api_key) from exc
        return chat_result(completion, model)

    def stream(self, model: ModelSpec, request: ChatRequest):
        params = self._stream_params(model, request)
        return sdk_stream(
            lambda: self._post(params, stream=True),
            chunk_apply,
            model_id=model.model_id,
            expected=(openai.OpenAIError, ValueError),
            convert=lambda exc: errors.from_openai(exc, secret=self.provider.api_key),
        )

    def relay(self, model: ModelSpec, request: ChatRequest, relay_id: str):
        """The stream with its plain content events relayed as the upstream's bytes
        (``providers.relay``); tool calls go through the parser, as in ``stream``."""
        if request.tools:
            return self.stream(model, request)
        params = self._stream_params(model, request)

        async def relay_open() -> SseRelay:
            response = await self._client.post(
                self._completions_url,
                cast_to=httpx2.Response,
                body=params,
                stream=True,
                options={"headers": RAW_STREAM},
            )
            return SseRelay(response, model_id=model.model_id, relay_id=relay_id, stream_error=openai.APIError)

        return sdk_stream(
            relay_open,
            relay_apply,
            model_id=model.model_id,
            expected=(openai.OpenAIError, ValueError, *errors.TRANSPORT_ERRORS),
            convert=lambda exc: errors.from_openai(exc, secret=self.provider.api_key),
        )

    def _stream_params(self, model: ModelSpec, request: ChatRequest) -> dict:
        return {
            **chat_params(model, request, self.SUPPORTED_PARAMS, self.FETCHES_IMAGE_URLS),
            "stream": True,
            "stream_options": STREAM_OPTIONS,
        }

    def _post(self, params: dict, *, stream: bool = False):
        """The SDK's own request (auth, base URL, timeout, status errors, SSE framing, a
        mid-stream error event raised), answered as plain JSON: ``cast_to=object`` is the
        SDK's documented way to skip building its typed objects, and the params, built
        here from a checked request, skip its per-call type-driven transformation."""
        return self._client.post(
            self._completions_url,
            cast_to=object,
            body=params,
            stream=stream,
            stream_cls=openai.AsyncStream[object] if stream else None,
        )

    async def list_models(self) -> list[ListedModel]:
        try:
            return [ListedModel(m.id) async for m in self._client.models.list()]
        except (openai.OpenAIError, ValueError) as exc:
            raise errors.from_openai(exc, secret=self.provider.api_key) from exc

    async def aclose(self) -> None:
        await self._client.close()


# -- request --


def endpoint_url(client: openai.AsyncOpenAI, path: str) -> str:
    """The absolute URL of ``path`` under the client's base URL, joined as the SDK joins a
    relative one (``base_url`` ends with a slash). Given absolute, the SDK parses the URL twice
    a call instead of three times and skips a copy (~30 µs of a streamed request's ~1 ms)."""
    base = client.base_url
    return str(base.copy_with(raw_path=base.raw_path + path.encode()))


def chat_params(model: ModelSpec, request: ChatRequest, supported: frozenset[str], fetches_urls: bool) -> dict:
    """The Chat Completions body: ``supported`` names the optional parameters the API takes;
    the limit and tool settings go only when the caller set them (an absent limit is the
    model's own maximum)."""
    messages = [
        _message(m, fetches_urls)
        if m.images or m.tool_calls or m.role == "tool"
        else {"role": m.role, "content": m.content}
        for m in request.messages
    ]
    if request.system:
        messages.insert(0, {"role": "system", "content": request.system})
    params: dict = {"model": model.model_id, "messages": messages}
    limit = max_tokens_sent(model, request)
    if limit is not None:
        params[model.max_tokens_param if model.max_tokens_param in TOKEN_PARAMS else "max_tokens"] = limit
    temperature = temperature_for(model, request)
    if temperature is not None:
        params["temperature"] = temperature
    if request.tools:
        params.update(_tool_params(request))
    if request.response_format is not None:
        params["response_format"] = _response_format(request.response_format)
    optional = request.optional_params(model, supported)
    if optional:
        if "stop" in optional:
            optional["stop"] = list(optional["stop"])
        params.update(optional)
    return params


def _message(message: Message, fetches_urls: bool) -> dict:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.tool_calls:
        return {
            "role": message.role,
            "content": message.content or None,  # OpenAI's own shape for a call without text
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in message.tool_calls
            ],
        }
    parts = [_image_part(image, fetches_urls) for image in message.images]
    if message.content:
        parts.append({"type": "text", "text": message.content})
    return {"role": message.role, "content": parts}


def _image_part(image: Image, fetches_urls: bool) -> dict:
    if not (image.inline or fetches_urls):
        raise ProviderError(
            ErrorKind.BAD_REQUEST, "this provider cannot fetch image URLs: send the image as a data: URL"
        )
    part: dict = {"url": image.url}
    if image.detail:
        part["detail"] = image.detail
    return {"type": "image_url", "image_url": part}


def _tool_params(request: ChatRequest) -> dict:
    """tools, and tool_choice / parallel_tool_calls, which the API takes only beside tools."""
    params: dict = {"tools": [_tool(t) for t in request.tools]}
    choice = request.tool_choice
    if choice == "function":
        if not request.tool_choice_name:
            raise ProviderError(ErrorKind.BAD_REQUEST, "tool_choice 'function' needs the function's name")
        params["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice_name}}
    elif choice in TOOL_CHOICES:
        params["tool_choice"] = choice
    elif choice is not None:
        raise ProviderError(ErrorKind.BAD_REQUEST, f"unknown tool_choice {choice!r}")
    if request.parallel_tool_calls is not None:
        params["parallel_tool_calls"] = request.parallel_tool_calls
    return params


def _tool(tool: Tool) -> dict:
    function: dict = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = tool.parameters
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _response_format(fmt: ResponseFormat) -> dict:
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.type != "json_schema":
        raise ProviderError(ErrorKind.BAD_REQUEST, f"unknown response_format type {fmt.type!r}")
    schema: dict = {"name": fmt.name}
    if fmt.schema is not None:
        schema["schema"] = fmt.schema
    if fmt.strict is not None:
        schema["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": schema}


# -- answers --


def chat_result(completion: dict, model: ModelSpec) -> ChatResult:
    try:
        choice, usage = completion["choices"][0], completion["usage"]
        message = choice["message"]
        return ChatResult(
            text=message.get("content") or "",
            model=completion.get("model") or model.model_id,
            input_tokens=usage["prompt_tokens"],
            output_tokens=usage["completion_tokens"],
            finish_reason=_finish(choice.get("finish_reason")),
            tool_calls=_tool_calls(message.get("tool_calls")),
        )
    except (AttributeError, IndexError, KeyError, TypeError) as exc:
        raise errors.malformed(exc) from exc


def _tool_calls(calls: list | None) -> tuple[ToolCall, ...]:
    if not calls:
        return ()
    return tuple(ToolCall(c["id"], c["function"]["name"], c["function"].get("arguments") or "") for c in calls)


def _finish(reason: str | None) -> str | None:
    return FINISH_REASONS.get(reason, reason) if reason else None


def chunk_apply(chunk: dict, end: StreamEvent) -> str | StreamEvent | None:
    """One stream chunk: its text delta is returned (or its tool-call pieces, as an event),
    its model, usage and finish reason are kept on ``end``."""
    usage = chunk.get("usage")
    if usage:
        end.input_tokens, end.output_tokens = usage["prompt_tokens"], usage["completion_tokens"]
    if chunk.get("model"):
        end.model = chunk["model"]
    choices = chunk.get("choices")
    if not choices:
        return None
    choice = choices[0]
    if choice.get("finish_reason"):
        end.finish_reason = _finish(choice["finish_reason"])
    delta = choice.get("delta") or {}
    return delta.get("content") or _tool_call_event(delta)  # OpenAI never sends call pieces beside text


def relay_apply(item: dict | StreamEvent, end: StreamEvent) -> str | StreamEvent | None:
    """A relay's item: relayed content as it is, a parsed chunk as ``chunk_apply`` reads it."""
    return item if type(item) is StreamEvent else chunk_apply(item, end)  # type: ignore[arg-type]


def _tool_call_event(delta: dict) -> StreamEvent | None:
    calls = delta.get("tool_calls")
    return StreamEvent(tool_calls=tuple(_tool_call_delta(c, i) for i, c in enumerate(calls))) if calls else None


def _tool_call_delta(piece: dict, position: int) -> ToolCallDelta:
    """OpenAI streams a call as ``{index, id?, type?, function: {name?, arguments?}}``: the
    first piece names it, later ones carry argument fragments. Some compatible hosts (older
    Ollama) send each call whole without an ``index``: its place in the list is its index."""
    function = piece.get("function") or {}
    index = piece.get("index", position)
    return ToolCallDelta(index, piece.get("id"), function.get("name"), function.get("arguments") or "")

"""The one interface every provider adapter implements, and the types that cross it.

Nothing outside ``modelhub.providers`` imports an SDK; it sees only these types."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal


class ErrorKind(str, enum.Enum):
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    CONTEXT_TOO_LONG = "context_too_long"
    SERVER = "server"


# The caller's own bad request is not the model's fault: no failover, no cooldown.
CALLER_FAULTS = frozenset({ErrorKind.BAD_REQUEST, ErrorKind.CONTEXT_TOO_LONG})


class ProviderError(Exception):
    """A normalised provider failure. ``original`` keeps the SDK's exception."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        original: BaseException | None = None,
    ):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.original = original

    @property
    def retryable(self) -> bool:
        """True when another model may succeed where this one failed."""
        return self.kind not in CALLER_FAULTS

    def __repr__(self):
        return f"ProviderError({self.kind.value}, status={self.status}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for (OpenAI's shape): ``arguments`` is a JSON string."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: ``parameters`` is its JSON schema (an object schema)."""

    name: str
    description: str = ""
    parameters: dict | None = None
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class Image:
    """An image in a user message: a ``data:`` URL (``media_type`` and base64 ``data`` split
    out) or an ``https:`` URL that the provider fetches (``data`` empty)."""

    url: str
    media_type: str = ""
    data: str = ""
    detail: str | None = None

    @property
    def inline(self) -> bool:
        return bool(self.data)


@dataclass(frozen=True, slots=True)
class Message:
    """One turn. ``role``: "user" | "assistant" | "tool" (system text travels in
    ChatRequest.system). An assistant turn may carry ``tool_calls`` (its ``content`` then
    possibly empty); a tool turn answers the call ``tool_call_id`` of function ``name``
    with ``content``. A user turn's ``images`` come before its text."""

    role: str
    content: str
    images: tuple[Image, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """JSON output: ``type`` "json_object" (any JSON object) or "json_schema" (``schema``)."""

    type: str
    schema: dict | None = None
    name: str = "response"
    strict: bool | None = None


# Sampling and bookkeeping parameters a request may carry besides the core ones; each
# adapter passes those its API takes and the model does not list in ``params_unsupported``.
OPTIONAL_PARAMS = ("stop", "top_p", "seed", "presence_penalty", "frequency_penalty", "user", "metadata")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[Message, ...]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: str | None = None  # "auto" | "none" | "required" | "function" (``tool_choice_name``)
    tool_choice_name: str | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    stop: tuple[str, ...] = ()
    top_p: float | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    user: str | None = None
    metadata: dict | None = None

    @property
    def images(self) -> int:
        return sum(len(m.images) for m in self.messages)

    def optional_params(self, model: ModelSpec, supported: frozenset[str]) -> dict:
        """The optional parameters the caller set that this API (``supported``) and model take."""
        params = {}
        for name in OPTIONAL_PARAMS:
            value = getattr(self, name)
            if value is not None and value != () and name in supported and name not in model.params_unsupported:
                params[name] = value
        return params


@dataclass(frozen=True, slots=True)
class ChatResult:
    text: str
    model: str
    input_tokens: int
    output_tokens: int
    finish_reason: str | None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call: the call's ``index`` in the answer (0, 1, ...); its
    first piece names ``id`` and ``name``, later ones add ``arguments`` fragments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class StreamEvent:
    """A piece of a streamed answer: a text delta, tool-call deltas, or (``last``) the end
    of the answer with the model, the provider-reported usage (None where the provider gave
    none) and the finish reason. A relayed piece (``Adapter.relay``) also carries ``raw``,
    the upstream's bytes of ``count`` content events, ready for the client as they are."""

    text: str = ""
    last: bool = False
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    raw: bytes = b""
    count: int = 1


@dataclass(frozen=True, slots=True)
class ListedModel:
    """A model as a provider's listing names it (for discovery)."""

    model_id: str
    display_name: str = ""
    context_window: int | None = None
    max_output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider as the router sees it: plain values read from the registry."""

    name: str
    kind: str
    base_url: str | None  # resolved: DB value, else the environment, else None (SDK default)
    api_key_env: str
    api_key: str | None  # resolved from the environment; never shown
    timeout: float

    def __repr__(self):  # keep the key out of logs and tracebacks
        return f"ProviderSpec({self.name!r}, kind={self.kind!r}, base_url={self.base_url!r})"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    pk: int
    model_id: str
    display_name: str
    provider: ProviderSpec
    context_window: int
    max_output_tokens: int
    input_price_per_mtok: Decimal
    output_price_per_mtok: Decimal
    supports_temperature: bool = True
    supports_streaming: bool = True
    max_tokens_param: str = "max_tokens"
    env_suffix: str = ""
    supports_tools: bool = True
    supports_vision: bool = False
    supports_json_schema: bool = False
    params_unsupported: frozenset[str] = frozenset()
    deprecated_on: date | None = None
    retires_on: date | None = None
    successor_pk: int | None = None


def max_tokens_for(model: ModelSpec, request: ChatRequest) -> int:
    """The caller's max_tokens clamped to what the model can produce; without one, the
    model's own maximum (never a smaller default: an answer cut short is a wrong answer)."""
    if request.max_tokens is None:
        return model.max_output_tokens
    return max(1, min(request.max_tokens, model.max_output_tokens))


def max_tokens_sent(model: ModelSpec, request: ChatRequest) -> int | None:
    """What an API that does not require a limit is sent: the clamped caller's value, or
    None (the model's own default, which is its maximum)."""
    return None if request.max_tokens is None else max_tokens_for(model, request)


def temperature_for(model: ModelSpec, request: ChatRequest) -> float | None:
    """Temperature, dropped where the model does not take one (reasoning models)."""
    return request.temperature if model.supports_temperature else None


class Adapter:
    """One per provider API. Built once per (provider settings, event loop) and reused."""

    def __init__(self, provider: ProviderSpec):
        self.provider = provider

    async def chat(self, model: ModelSpec, request: ChatRequest) -> ChatResult:
        raise NotImplementedError

    def stream(self, model: ModelSpec, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """The answer as it is generated: text deltas, then one ``last`` event. Failures,
        before or during the stream, raise ProviderError. Closing the iterator early
        cancels the upstream call."""
        raise NotImplementedError

    def relay(self, model: ModelSpec, request: ChatRequest, relay_id: str) -> AsyncIterator[StreamEvent]:
        """``stream``, for a client that speaks this provider's wire format (an OpenAI-format
        client): where an adapter can, its content events carry the upstream's own bytes in
        ``raw``, with the answer's id made ``relay_id``. Others stream as usual."""
        return self.stream(model, request)

    async def list_models(self) -> list[ListedModel]:
        """Every model the provider lists, through its SDK."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release the SDK client's connections."""

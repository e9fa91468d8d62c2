"""The one interface every provider adapter implements, and the types that cross it.

Nothing outside ``modelhub.providers`` imports an SDK; it sees only these types."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
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
class Message:
    role: str  # "user" | "assistant"  (system text travels in ChatRequest.system)
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[Message, ...]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class ChatResult:
    text: str
    model: str
    input_tokens: int
    output_tokens: int
    finish_reason: str | None


@dataclass(slots=True)
class StreamEvent:
    """A piece of a streamed answer: a text delta, or (``last``) the end of the answer with
    the model, the provider-reported usage (None where the provider gave none) and the
    finish reason."""

    text: str = ""
    last: bool = False
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None


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


DEFAULT_MAX_TOKENS = 4096


def max_tokens_for(model: ModelSpec, request: ChatRequest) -> int:
    """The caller's max_tokens (or a default), clamped to what the model can produce."""
    wanted = request.max_tokens or DEFAULT_MAX_TOKENS
    return max(1, min(wanted, model.max_output_tokens))


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

    async def list_models(self) -> list[ListedModel]:
        """Every model the provider lists, through its SDK."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release the SDK client's connections."""

"""Parsing and validating the chat request body. Hand-written rather than a DRF
serializer: it runs on every chat request, and DRF validation would cost about a third
of the hub's CPU budget per request (DESIGN.md, "Hot path"). Every failure names the
offending field."""
from __future__ import annotations

from dataclasses import dataclass

import orjson

from ..providers.base import ChatRequest, Message

ROLES = ("user", "assistant", "system")
MAX_TOKENS_LIMIT = 1_000_000


class InvalidRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


@dataclass(frozen=True, slots=True)
class ChatInput:
    request: ChatRequest
    route: str
    stream: bool
    conversation_id: str | None


def json_object(raw: bytes) -> dict:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("Request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object.")
    return body


def _text(value, param: str) -> str:
    """A message content: a string, or a list of {"type": "text", "text": ...} parts."""
    if isinstance(value, list):
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                   for p in value):
            raise InvalidRequest("Content parts must be {\"type\": \"text\", \"text\": \"...\"}.", param)
        value = "".join(p["text"] for p in value)
    if not isinstance(value, str):
        raise InvalidRequest("Must be a string.", param)
    if not value.strip():
        raise InvalidRequest("Must not be empty.", param)
    return value


def _optional(body: dict, name: str, kind, default=None):
    value = body.get(name, default)
    if value is None or value is default:
        return value
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise InvalidRequest(f"Must be {_KIND_NAMES[kind]}.", name)
    return value


_KIND_NAMES = {str: "a string", bool: "a boolean", int: "an integer", (int, float): "a number"}


def messages_parse(raw, param: str = "messages", limit: int = 1000) -> tuple[tuple[Message, ...], str | None]:
    """Messages with their system text split out (system messages join the system prompt)."""
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("Must be a non-empty list of messages.", param)
    if len(raw) > limit:
        raise InvalidRequest(f"At most {limit} messages.", param)
    messages, system = [], []
    for i, item in enumerate(raw):
        where = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest("Must be an object with role and content.", where)
        role = item.get("role")
        if role not in ROLES:
            raise InvalidRequest(f"Unknown role {role!r}; expected one of {', '.join(ROLES)}.", f"{where}.role")
        content = _text(item.get("content"), f"{where}.content")
        if role == "system":
            system.append(content)
        else:
            messages.append(Message(role, content))
    if not messages:
        raise InvalidRequest("At least one user or assistant message is needed.", param)
    return tuple(messages), "\n\n".join(system) or None


def max_tokens_parse(value, param: str = "max_tokens") -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TOKENS_LIMIT:
        raise InvalidRequest(f"Must be an integer from 1 to {MAX_TOKENS_LIMIT}.", param)
    return value


def temperature_parse(value) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 2:
        raise InvalidRequest("Must be a number from 0 to 2.", "temperature")
    return float(value)


def _route(body: dict) -> str:
    """``route``, or ``model`` as OpenAI-style clients send it: a route name or a model id."""
    if "route" in body and "model" in body:
        raise InvalidRequest("Give 'route' or 'model', not both.", "route")
    param = "model" if "model" in body else "route"
    route = _optional(body, param, str, "pam")
    if not route or len(route) > 200:
        raise InvalidRequest("Must be a route name or model id of 1 to 200 characters.", param)
    return route


def chat_input_parse(raw: bytes, *, max_messages: int) -> ChatInput:
    body = json_object(raw)
    if ("message" in body) == ("messages" in body):
        raise InvalidRequest("Give either 'message' (a string) or 'messages' (a list).", "message")
    if "message" in body:
        messages, system = (Message("user", _text(body["message"], "message")),), None
    else:
        messages, system = messages_parse(body["messages"], limit=max_messages)
    extra_system = _optional(body, "system", str)
    if extra_system:
        system = f"{extra_system}\n\n{system}" if system else extra_system
    route = _route(body)
    conversation_id = _optional(body, "conversation_id", str)
    if conversation_id is not None and len(conversation_id) > 200:
        raise InvalidRequest("At most 200 characters.", "conversation_id")
    request = ChatRequest(messages=messages, system=system,
                          max_tokens=max_tokens_parse(body.get("max_tokens")),
                          temperature=temperature_parse(body.get("temperature")))
    return ChatInput(request, route, bool(_optional(body, "stream", bool, False)), conversation_id)


@dataclass(frozen=True, slots=True)
class CompletionInput:
    """An OpenAI chat.completions request: ``model`` names a route or a model id."""

    request: ChatRequest
    model: str
    stream: bool
    include_usage: bool


# Accepted by OpenAI, not honoured here: refused rather than silently ignored.
UNSUPPORTED = ("tools", "functions", "tool_choice", "response_format", "logprobs", "audio")


def completion_input_parse(raw: bytes, *, max_messages: int) -> CompletionInput:
    body = json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not 1 <= len(model) <= 200:
        raise InvalidRequest("Must be a route name or model id of 1 to 200 characters.", "model")
    for name in UNSUPPORTED:
        if body.get(name):
            raise InvalidRequest(f"'{name}' is not supported by this endpoint.", name)
    if body.get("n", 1) != 1:
        raise InvalidRequest("Only n=1 is supported.", "n")
    messages, system = messages_parse(body.get("messages"), limit=max_messages)
    limit = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    request = ChatRequest(messages=messages, system=system,
                          max_tokens=max_tokens_parse(body.get(limit), limit),
                          temperature=temperature_parse(body.get("temperature")))
    stream = bool(_optional(body, "stream", bool, False))
    return CompletionInput(request, model, stream, stream and _include_usage(body.get("stream_options")))


def _include_usage(options) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict):
        raise InvalidRequest("Must be an object.", "stream_options")
    return bool(_optional(options, "include_usage", bool, False))

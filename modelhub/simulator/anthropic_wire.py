"""Anthropic Messages wire format."""

from __future__ import annotations

import re

from .asgi import bearer, dumps, header, next_id, sse_event
from .reply import Reply, Request, count_words, display_name, int_or_none

CONTEXT_WINDOW = 200_000
_ERRORS = {  # status -> (type, message)
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def _error(type_: str, message: str) -> dict:
    return {"type": "error", "error": {"type": type_, "message": message}}


class AnthropicWire:
    name = "anthropic"
    stream_error_event = sse_event(b"error", _error("overloaded_error", "Overloaded"))
    garbage_event = b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta\n\n'

    def api_key(self, scope) -> str | None:
        return header(scope, b"x-api-key") or bearer(scope)

    def error(self, status: int, message: str | None = None) -> bytes:
        default_type = "api_error" if status >= 500 else "invalid_request_error"
        type_, text = _ERRORS.get(status, (default_type, f"Simulated error {status}."))
        return dumps(_error(type_, message or text))

    def context_error(self, input_tokens: int) -> bytes:
        message = f"prompt is too long: {CONTEXT_WINDOW + input_tokens} tokens > {CONTEXT_WINDOW} maximum"
        return dumps(_error("invalid_request_error", message))

    def parse(self, body, model=None, stream=False) -> Request:
        if not isinstance(body, dict):
            return Request("", problem="There was an error parsing the body of your request.")
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            return Request("", problem="model: Field required")
        stream, limit = bool(body.get("stream")), int_or_none(body.get("max_tokens"))
        if not isinstance(messages, list) or not messages:
            return Request(model, stream, problem="messages: Field required")
        if limit is None:
            return Request(model, stream, problem="max_tokens: Field required")
        words = count_words(body.get("system")) + sum(
            count_words(m.get("content")) for m in messages if isinstance(m, dict)
        )
        return Request(model, stream, max(words, 1), limit)

    def completion(self, reply: Reply) -> bytes:
        return dumps(
            {
                **_message(reply, reply.text),
                "stop_reason": _stop_reason(reply),
                "usage": _usage(reply.input_tokens, reply.output_tokens),
            }
        )

    def stream(self, reply: Reply, body: dict) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """(prelude, content chunks, tail) of a streamed answer."""
        start = {**_message(reply, None), "stop_reason": None, "usage": _usage(reply.input_tokens, 1)}
        prelude = [
            sse_event(b"message_start", {"type": "message_start", "message": start}),
            sse_event(
                b"content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            sse_event(b"ping", {"type": "ping"}),
        ]
        content = [
            sse_event(
                b"content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": c}},
            )
            for c in reply.chunks
        ]
        tail = [
            sse_event(b"content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse_event(
                b"message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
                    "usage": {"output_tokens": reply.output_tokens},
                },
            ),
            sse_event(b"message_stop", {"type": "message_stop"}),
        ]
        return prelude, content, tail

    def models(self, ids: list[str]) -> bytes:
        return dumps(
            {
                "data": [
                    {"type": "model", "id": i, "display_name": display_name(i), "created_at": _created_at(i)}
                    for i in ids
                ],
                "has_more": False,
                "first_id": ids[0] if ids else None,
                "last_id": ids[-1] if ids else None,
            }
        )


def _message(reply: Reply, text: str | None) -> dict:
    content = [] if text is None else [{"type": "text", "text": text}]
    return {
        "id": next_id("msg_sim"),
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_sequence": None,
    }


def _usage(input_tokens: int, output_tokens: int) -> dict:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _stop_reason(reply: Reply) -> str:
    return "max_tokens" if reply.truncated else "end_turn"


def _created_at(model_id: str) -> str:
    date = re.search(r"(\d{4})(\d{2})(\d{2})$", model_id)
    return f"{date[1]}-{date[2]}-{date[3]}T00:00:00Z" if date else "2025-01-01T00:00:00Z"


ANTHROPIC = AnthropicWire()

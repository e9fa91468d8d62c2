"""OpenAI Chat Completions wire format (also served for OpenAI-compatible hosts)."""

from __future__ import annotations

import time

from .asgi import bearer, dumps, next_id, sse
from .reply import Reply, Request, count_words, int_or_none

CONTEXT_WINDOW = 128_000
_ERRORS = {  # status -> (type, code, message)
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Access denied."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def _error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class OpenAIWire:
    stream_error_event = sse(_error(_ERRORS[500][2], "server_error"))
    garbage_event = b'data: {"id": "chatcmpl-sim", "choices": [{"delta"\n\n'

    def __init__(self, name: str, owned_by: str):
        self.name = name
        self.owned_by = owned_by

    def api_key(self, scope) -> str | None:
        return bearer(scope)

    def error(self, status: int, message: str | None = None) -> bytes:
        default_type = "server_error" if status >= 500 else "invalid_request_error"
        type_, code, text = _ERRORS.get(status, (default_type, None, f"Simulated error {status}."))
        return dumps(_error(message or text, type_, code))

    def context_error(self, input_tokens: int) -> bytes:
        message = (
            f"This model's maximum context length is {CONTEXT_WINDOW} tokens. However, your "
            f"messages resulted in {CONTEXT_WINDOW + input_tokens} tokens. "
            "Please reduce the length of the messages."
        )
        return dumps(_error(message, "invalid_request_error", "context_length_exceeded", "messages"))

    def parse(self, body, model=None, stream=False) -> Request:
        if not isinstance(body, dict):
            return Request("", problem="We could not parse the JSON body of your request.")
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            return Request("", problem="you must provide a model parameter")
        stream = bool(body.get("stream"))
        if not isinstance(messages, list) or not messages:
            return Request(model, stream, problem="Missing required parameter: 'messages'.")
        words = sum(count_words(m.get("content")) for m in messages if isinstance(m, dict))
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        return Request(model, stream, max(words, 1), int_or_none(limit))

    def completion(self, reply: Reply) -> bytes:
        return dumps(
            {
                "id": next_id("chatcmpl-sim"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": reply.model,
                "system_fingerprint": "fp_simulator",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": _finish(reply),
                    }
                ],
                "usage": _usage(reply),
            }
        )

    def stream(self, reply: Reply, body: dict) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """(prelude, content chunks, tail) of a streamed answer."""
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        base = {
            "id": next_id("chatcmpl-sim"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": reply.model,
            "system_fingerprint": "fp_simulator",
        }
        if with_usage:
            base["usage"] = None

        def chunk(delta: dict, finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice]})

        tail = [chunk({}, _finish(reply))]
        if with_usage:
            tail.append(sse({**base, "choices": [], "usage": _usage(reply)}))
        tail.append(b"data: [DONE]\n\n")
        return [chunk({"role": "assistant", "content": ""})], [chunk({"content": c}) for c in reply.chunks], tail

    def models(self, ids: list[str]) -> bytes:
        return dumps(
            {
                "object": "list",
                "data": [
                    {"id": i, "object": "model", "created": 1_700_000_000, "owned_by": self.owned_by} for i in ids
                ],
            }
        )


def _finish(reply: Reply) -> str:
    return "length" if reply.truncated else "stop"


def _usage(reply: Reply) -> dict:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.total_tokens,
    }


OPENAI = OpenAIWire("openai", "openai")
COMPAT = OpenAIWire("compat", "compat")

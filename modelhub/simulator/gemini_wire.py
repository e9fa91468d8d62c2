"""Google Gemini (Generative Language API) wire format."""

from __future__ import annotations

from .asgi import dumps, header, next_id, query_param
from .reply import Reply, Request, count_words, display_name, int_or_none

CONTEXT_WINDOW = 1_048_576
VERSIONS = frozenset({"v1", "v1beta", "v1alpha"})
ACTIONS = {"generateContent": False, "streamGenerateContent": True}  # action -> streamed
_ERRORS = {  # status -> (status name, message)
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}


def _error(status: int, message: str | None = None) -> dict:
    name, text = _ERRORS.get(
        status, ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION", f"Simulated error {status}.")
    )
    return {"error": {"code": status, "message": message or text, "status": name}}


def _sse(payload) -> bytes:
    return b"data: " + dumps(payload) + b"\r\n\r\n"


class GeminiWire:
    name = "gemini"
    stream_error_event = _sse(_error(503))
    garbage_event = b'data: {"candidates": [{"content": {"parts"\r\n\r\n'

    def api_key(self, scope) -> str | None:
        return header(scope, b"x-goog-api-key") or query_param(scope, "key")

    def error(self, status: int, message: str | None = None) -> bytes:
        return dumps(_error(status, message))

    def context_error(self, input_tokens: int) -> bytes:
        message = (
            f"The input token count ({CONTEXT_WINDOW + input_tokens}) exceeds the maximum "
            f"number of tokens allowed ({CONTEXT_WINDOW})."
        )
        return dumps(_error(400, message))

    def parse(self, body, model=None, stream=False) -> Request:
        if not isinstance(body, dict):
            return Request(model or "", stream, problem="Invalid JSON payload received.")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return Request(model, stream, problem="* GenerateContentRequest.contents: contents is not specified")
        system = body.get("systemInstruction")
        words = sum(count_words(c.get("parts")) for c in [system, *contents] if isinstance(c, dict))
        config = body.get("generationConfig")
        limit = int_or_none(config.get("maxOutputTokens")) if isinstance(config, dict) else None
        return Request(model, stream, max(words, 1), limit)

    def completion(self, reply: Reply) -> bytes:
        return dumps(_chunk(reply, reply.text, next_id("sim-"), final=True))

    def stream(self, reply: Reply, body: dict) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """(prelude, content chunks, tail); the last content chunk carries finishReason and usage."""
        response_id, last = next_id("sim-"), len(reply.chunks) - 1
        return [], [_sse(_chunk(reply, c, response_id, final=i == last)) for i, c in enumerate(reply.chunks)], []

    def models(self, ids: list[str]) -> bytes:
        return dumps(
            {
                "models": [
                    {
                        "name": f"models/{i}",
                        "version": "001",
                        "displayName": display_name(i),
                        "description": f"Simulated {display_name(i)}",
                        "inputTokenLimit": CONTEXT_WINDOW,
                        "outputTokenLimit": 65_536,
                        "supportedGenerationMethods": ["generateContent", "countTokens"],
                    }
                    for i in ids
                ]
            }
        )


def _chunk(reply: Reply, text: str, response_id: str, final: bool) -> dict:
    candidate = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    chunk = {"candidates": [candidate], "modelVersion": reply.model, "responseId": response_id}
    if final:
        candidate["finishReason"] = "MAX_TOKENS" if reply.truncated else "STOP"
        chunk["usageMetadata"] = {
            "promptTokenCount": reply.input_tokens,
            "candidatesTokenCount": reply.output_tokens,
            "totalTokenCount": reply.total_tokens,
        }
    return chunk


GEMINI = GeminiWire()

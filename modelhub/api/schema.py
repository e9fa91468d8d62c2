"""What the OpenAPI schema (drf-spectacular) says beyond the serializers: the error
responses of each endpoint family, the server-sent events of a streamed answer, and how
the custom fields look."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field

from .fields import MessagesField, StrictBooleanField, TextField
from .serializers import NativeErrorSerializer, OpenAIErrorSerializer

MESSAGE_SCHEMA = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "user", "assistant"]},
        "content": {
            "oneOf": [
                {"type": "string", "minLength": 1},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}},
                    },
                },
            ]
        },
    },
}
extend_schema_field({"type": "array", "minItems": 1, "items": MESSAGE_SCHEMA})(MessagesField)
extend_schema_field({"oneOf": MESSAGE_SCHEMA["properties"]["content"]["oneOf"]})(TextField)
extend_schema_field(OpenApiTypes.BOOL)(StrictBooleanField)

SSE_NATIVE = (
    'With `stream: true`: `event: delta` / `data: {"content": "..."}` for each piece of text, then '
    "`event: done` whose data is the plain answer's metadata (without `content`, with `ttft_ms`). "
    "A failure before the first content fails over unseen; after it the stream ends with "
    '`event: error` (data: `{"error": {"type": "stream_error", "kind", "message"}, ...metadata}`).'
)
SSE_OPENAI = (
    "With `stream: true`: `data: <chat.completion.chunk>` events as OpenAI sends them, the last one "
    "with `finish_reason`, then (with `stream_options.include_usage`) a chunk with `usage` and empty "
    "`choices`, then `data: [DONE]`. A failure after the first content ends the stream with "
    '`data: {"error": {...}}`, which the OpenAI SDK raises as APIError.'
)


def answer_or_events(serializer, events: str) -> dict:
    """A 200 that is JSON, or server-sent events when the body asks to stream."""
    description = "The answer (JSON). " + events
    return {
        (200, "application/json"): OpenApiResponse(serializer, description=description),
        (200, "text/event-stream"): OpenApiResponse(OpenApiTypes.STR, description=description),
    }


def _errors(serializer, statuses: dict[int, str]) -> dict:
    return {status: OpenApiResponse(serializer, description=text) for status, text in statuses.items()}


CHAT_ERRORS = {
    400: "Bad input (param names the field), or the provider refused the caller's own request.",
    401: "Missing, invalid or expired API key.",
    403: "This key may not use the route.",
    404: "Unknown route or model.",
    413: "Body over MODELHUB_MAX_BODY_BYTES.",
    429: "The key's rate or daily budget (Retry-After).",
    503: "Every model failed (attempts and each model's state), or no configuration.",
    504: "The route's latency budget passed.",
}
NATIVE_ERRORS = _errors(NativeErrorSerializer, CHAT_ERRORS)
OPENAI_ERRORS = _errors(OpenAIErrorSerializer, CHAT_ERRORS)


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "modelhub.api.base.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A hub API key (createapikey)."}


class StaffKeyScheme(ApiKeyScheme):
    target_class = "modelhub.api.auth.ApiKeyAuthentication"
    name = "StaffApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "The API key of a staff user."}

"""What the OpenAPI schema (drf-spectacular) says beyond the serializers: the error
responses of each endpoint family, the server-sent events of a streamed answer, and how
the custom fields look."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field

from .content import MessagesField, MetadataField, ResponseFormatField, StopField, ToolChoiceField, ToolsField
from .fields import StrictBooleanField, TextField
from .serializers import NativeErrorSerializer, OpenAIErrorSerializer

TEXT_PART = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}},
}
IMAGE_PART = {
    "type": "object",
    "required": ["type", "image_url"],
    "properties": {
        "type": {"type": "string", "enum": ["image_url"]},
        "image_url": {
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "description": "data:image/(png|jpeg|gif|webp);base64,... or https://..."},
                "detail": {"type": "string", "enum": ["auto", "low", "high"]},
            },
        },
    },
}
TOOL_CALL = {
    "type": "object",
    "required": ["id", "type", "function"],
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string", "enum": ["function"]},
        "function": {
            "type": "object",
            "required": ["name", "arguments"],
            "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}},
        },
    },
}
TEXT_CONTENT = [{"type": "string", "minLength": 1}, {"type": "array", "items": TEXT_PART}]
MESSAGE_SCHEMA = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {
            "description": "Text, or parts (images in user messages only); null in an assistant "
            "message that has tool_calls.",
            "oneOf": [*TEXT_CONTENT[:1], {"type": "array", "items": {"oneOf": [TEXT_PART, IMAGE_PART]}}],
            "nullable": True,
        },
        "tool_calls": {"type": "array", "items": TOOL_CALL, "description": "An assistant message's tool calls."},
        "tool_call_id": {"type": "string", "description": "A tool message: the call it answers."},
    },
}
TOOL_SCHEMA = {
    "type": "object",
    "required": ["type", "function"],
    "properties": {
        "type": {"type": "string", "enum": ["function"]},
        "function": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
                "description": {"type": "string"},
                "parameters": {"type": "object", "description": "A JSON schema of type object."},
                "strict": {"type": "boolean"},
            },
        },
    },
}
extend_schema_field({"type": "array", "minItems": 1, "items": MESSAGE_SCHEMA})(MessagesField)
extend_schema_field({"oneOf": TEXT_CONTENT})(TextField)
extend_schema_field({"type": "array", "maxItems": 128, "items": TOOL_SCHEMA})(ToolsField)
extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": ["auto", "none", "required"]},
            {
                "type": "object",
                "required": ["type", "function"],
                "properties": {
                    "type": {"type": "string", "enum": ["function"]},
                    "function": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                },
            },
        ]
    }
)(ToolChoiceField)
extend_schema_field(
    {
        "type": "object",
        "required": ["type"],
        "description": '{"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "json_schema": '
        '{"name", "schema", "strict"}}',
        "properties": {
            "type": {"type": "string", "enum": ["text", "json_object", "json_schema"]},
            "json_schema": {
                "type": "object",
                "required": ["name", "schema"],
                "properties": {"name": {"type": "string"}, "schema": {"type": "object"}, "strict": {"type": "boolean"}},
            },
        },
    }
)(ResponseFormatField)
extend_schema_field(
    {"oneOf": [{"type": "string", "minLength": 1}, {"type": "array", "maxItems": 4, "items": {"type": "string"}}]}
)(StopField)
extend_schema_field(
    {"type": "object", "maxProperties": 16, "additionalProperties": {"type": "string", "maxLength": 512}}
)(MetadataField)
extend_schema_field(OpenApiTypes.BOOL)(StrictBooleanField)

SSE_NATIVE = (
    'With `stream: true`: `event: delta` / `data: {"content": "..."}` for each piece of text, or '
    '`data: {"tool_calls": [...]}` (OpenAI\'s `delta.tool_calls` shape) for each piece of a tool call, then '
    "`event: done` whose data is the plain answer's metadata (without `content`, with the whole "
    "`tool_calls` and `ttft_ms`). "
    "A failure before the first content fails over unseen; after it the stream ends with "
    '`event: error` (data: `{"error": {"type": "stream_error", "kind", "message"}, ...metadata}`).'
)
SSE_OPENAI = (
    "With `stream: true`: `data: <chat.completion.chunk>` events as OpenAI sends them (text in "
    "`delta.content`, tool calls in `delta.tool_calls`), the last one "
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

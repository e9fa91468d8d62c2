"""The OpenAI-compatible API: ``POST /v1/chat/completions`` and ``GET /v1/models``, so
that the official OpenAI SDKs and the tools built on them work unchanged. ``model`` names a
route or a model id; the answer's ``model`` is the model that answered."""

from __future__ import annotations

import time

import orjson
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from ..chat import ChatAnswer, ChatStream, chat_complete, chat_stream
from ..routing.snapshot import KeySpec, Snapshot
from .base import HubView
from .content import MessagesField, RequestOptions
from .errors import OPENAI
from .fields import (
    StrictBooleanField,
    max_tokens_field,
    route_name_field,
    temperature_field,
)
from .schema import OPENAI_ERRORS, SSE_OPENAI, answer_or_events
from .serializers import FastOutputSerializer, OpenAIUsageSerializer, tool_calls_out, tool_deltas_out
from .views import sse_response

DONE = b"data: [DONE]\n\n"
# Accepted by OpenAI, not honoured here: refused rather than silently ignored.
UNSUPPORTED = ("functions", "function_call", "logprobs", "top_logprobs", "logit_bias", "audio", "prediction")


class StreamOptions(serializers.Serializer):
    include_usage = StrictBooleanField(required=False, default=False)


class CompletionInput(RequestOptions):
    model = route_name_field(help_text="A route name or a model id.")
    messages = MessagesField(
        error_messages={
            "required": "Must be a non-empty list of messages.",
            "null": "Must be a non-empty list of messages.",
        }
    )
    max_tokens = max_tokens_field()
    max_completion_tokens = max_tokens_field(help_text="Wins over max_tokens.")
    temperature = temperature_field()
    stream = StrictBooleanField(required=False, default=False)
    stream_options = StreamOptions(required=False, allow_null=True)
    n = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=1,
        error_messages={"min_value": "Only n=1 is supported.", "max_value": "Only n=1 is supported."},
    )

    def validate(self, attrs: dict) -> dict:
        for name in UNSUPPORTED:
            if self.initial_data.get(name):
                raise serializers.ValidationError({name: f"'{name}' is not supported by this endpoint."})
        messages, system = attrs["messages"]
        max_tokens = attrs.get("max_completion_tokens") or attrs.get("max_tokens")
        request = self.chat_request(attrs, messages, system, max_tokens)
        options = attrs.get("stream_options") or {}
        return {
            "request": request,
            "route": attrs["model"],
            "stream": attrs["stream"],
            "include_usage": attrs["stream"] and options.get("include_usage", False),
        }


class CompletionMessage(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField(allow_null=True, help_text="None when the answer is tool calls only.")
    tool_calls = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text='[{"id", "type": "function", "function": {"name", "arguments": "<JSON>"}}]',
    )


class CompletionChoice(serializers.Serializer):
    index = serializers.IntegerField()
    message = CompletionMessage()
    logprobs = serializers.JSONField(allow_null=True)
    finish_reason = serializers.CharField()


class CompletionOutput(FastOutputSerializer):
    id = serializers.CharField()
    object = serializers.CharField(default="chat.completion")
    created = serializers.IntegerField()
    model = serializers.CharField(help_text="The model that answered.")
    choices = CompletionChoice(many=True)
    usage = OpenAIUsageSerializer()

    def represent(self, answer: ChatAnswer) -> dict:
        result = answer.result
        message: dict = {"role": "assistant", "content": result.text}
        if result.tool_calls:
            message["content"] = result.text or None
            message["tool_calls"] = tool_calls_out(result.tool_calls)
        return {
            "id": f"chatcmpl-{self.context['request_id']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": answer.model.model_id,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": result.finish_reason or "stop",
                }
            ],
            "usage": {
                "prompt_tokens": result.input_tokens,
                "completion_tokens": result.output_tokens,
                "total_tokens": result.input_tokens + result.output_tokens,
            },
        }


class CompletionsView(HubView):
    """OpenAI's chat.completions; ``x-modelhub-route`` and ``x-modelhub-attempts`` say
    which route answered and after how many attempts."""

    error_format = OPENAI
    InputSerializer = CompletionInput
    OutputSerializer = CompletionOutput

    @extend_schema(
        operation_id="chat_completions",
        tags=["OpenAI-compatible"],
        request=CompletionInput,
        responses={**answer_or_events(CompletionOutput, SSE_OPENAI), **OPENAI_ERRORS},
    )
    async def post(self, request):
        call, data = self.chat_call(request)
        explain = request.headers.get("x-modelhub-explain") == "1"
        if data["stream"]:
            chat = await chat_stream(call, relay_id=f"chatcmpl-{self.request_id}")
            return sse_response(
                completion_events(chat, self.request_id, data["include_usage"]),
                chat,
                **_route_headers(chat.stream.route.name, chat.stream.attempts, chat if explain else None),
            )
        answer = await chat_complete(call)
        body = self.OutputSerializer(answer, context={"request_id": self.request_id}).data
        return Response(body, headers=_route_headers(answer.route.name, answer.attempts, answer if explain else None))


def _route_headers(route: str, attempts: list, explained: ChatAnswer | ChatStream | None = None) -> dict:
    """The answering route and its attempts; with ``explained``, the routing explanation
    as JSON (``x-modelhub-routing``; for a stream, as it stood when the stream opened)."""
    headers = {"x-modelhub-route": route, "x-modelhub-attempts": str(len(attempts))}
    if explained is not None:
        headers["x-modelhub-routing"] = orjson.dumps(explained.routing(attempts=True)).decode()
    return headers


async def completion_events(chat: ChatStream, request_id: str, include_usage: bool):
    """chat.completion.chunk events, built from a per-stream prefix (one orjson call per
    delta), or relayed as the upstream sent them (an OpenAI-wire model: its content chunks,
    ``id`` and ``model`` made the hub's); the end (finish reason, usage, ``[DONE]``) is always
    the hub's. A failure after content ends the stream with an ``error`` event, which the
    OpenAI SDK raises as APIError."""
    stream = chat.stream
    head = b"".join(
        (
            b'data: {"id":"chatcmpl-',
            request_id.encode(),
            b'","object":"chat.completion.chunk","created":',
            str(int(time.time())).encode(),
            b',"model":',
            orjson.dumps(stream.model.model_id),
        )
    )
    delta = head + b',"choices":[{"index":0,"delta":{"content":'
    first: bytes | None = head + b',"choices":[{"index":0,"delta":{"role":"assistant","content":'
    calls = head + b',"choices":[{"index":0,"delta":{"tool_calls":'
    async for piece in chat.deltas():
        if type(piece) is str:
            yield (first or delta) + orjson.dumps(piece) + b'},"finish_reason":null}]}\n\n'
        elif type(piece) is bytes:  # the upstream's own chunks, already with this answer's id
            yield piece
        else:
            opening = b"" if first is None else first + b'null,"tool_calls":'
            yield (opening or calls) + orjson.dumps(tool_deltas_out(piece)) + b'},"finish_reason":null}]}\n\n'
        first = None
    if stream.error is not None:
        error = {
            "message": f"The answer was cut: {stream.error.message}",
            "type": "server_error",
            "param": None,
            "code": stream.error.kind.value,
        }
        yield b"data: " + orjson.dumps({"error": error}) + b"\n\n"
        return
    if first:  # an empty answer still names its role
        yield first + b'""},"finish_reason":null}]}\n\n'
    yield (
        head
        + b',"choices":[{"index":0,"delta":{},"finish_reason":'
        + orjson.dumps(stream.finish_reason or "stop")
        + b"}]}\n\n"
    )
    if include_usage:
        tokens_in, tokens_out = stream.tokens
        usage = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}
        yield head + b',"choices":[],"usage":' + orjson.dumps(usage) + b"}\n\n"
    yield DONE


class ModelEntry(serializers.Serializer):
    id = serializers.CharField(help_text="A route name (owned_by modelhub-route) or a model id.")
    object = serializers.CharField(default="model")
    created = serializers.IntegerField()
    owned_by = serializers.CharField()


class ModelList(FastOutputSerializer):
    object = serializers.CharField(default="list")
    data = ModelEntry(many=True)

    def represent(self, snapshot: Snapshot) -> dict:
        return {"object": "list", "data": model_list(snapshot, self.context["key"])}


class ModelsView(HubView):
    """The routes this key may use, then every enabled model id."""

    error_format = OPENAI
    throttle_classes: list = []
    OutputSerializer = ModelList

    @extend_schema(operation_id="models_list", tags=["OpenAI-compatible"], responses={200: ModelList, **OPENAI_ERRORS})
    async def get(self, request):
        return Response(self.OutputSerializer(self.snapshot, context={"key": request.auth}).data)


def model_list(snapshot: Snapshot, key: KeySpec) -> list[dict]:
    listed = [
        {"id": route.name, "object": "model", "created": 0, "owned_by": "modelhub-route"}
        for route in snapshot.routes.values()
        if route.enabled and (route.chain or route.strategy == "complexity") and key.may_use(route.name)
    ]
    listed += [
        {"id": name, "object": "model", "created": 0, "owned_by": spec.provider.name}
        for name, spec in snapshot.models.items()
        if name == spec.model_id and name not in snapshot.routes and key.may_use(name)
    ]
    return listed

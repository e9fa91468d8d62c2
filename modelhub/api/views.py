"""The native chat endpoint (``POST /api/v1/pam/chat``) and the health endpoint. The chat
view parses, calls the chat service, and formats: an answer, or server-sent events."""

from __future__ import annotations

import orjson
from django.conf import settings
from django.db import connection
from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from ..chat import ChatAnswer, ChatStream, chat_complete, chat_stream
from ..providers.base import ChatRequest, Message
from .base import HubView
from .fields import (
    InputSerializer,
    MessagesField,
    StrictBooleanField,
    StrictCharField,
    TextField,
    max_tokens_field,
    route_name_field,
    temperature_field,
)
from .schema import NATIVE_ERRORS, SSE_NATIVE, answer_or_events
from .serializers import AttemptSerializer, FastOutputSerializer, NativeUsageSerializer, attempts_out


class ChatInput(InputSerializer):
    message = TextField(required=False, help_text="The user's message (or give messages).")
    messages = MessagesField(required=False)
    system = StrictCharField(required=False, allow_null=True, allow_blank=True, trim_whitespace=False)
    route = route_name_field(required=False, help_text='A route name (default "pam") or a model id.')
    model = route_name_field(required=False, help_text="Accepted instead of route.")
    stream = StrictBooleanField(required=False, default=False, help_text="Answer as server-sent events.")
    max_tokens = max_tokens_field(help_text="Clamped to the answering model's maximum.")
    temperature = temperature_field()
    conversation_id = StrictCharField(
        required=False, allow_null=True, max_length=200, error_messages={"max_length": "At most 200 characters."}
    )

    def validate(self, attrs: dict) -> dict:
        if ("message" in attrs) == ("messages" in attrs):
            raise serializers.ValidationError({"message": "Give either 'message' (a string) or 'messages' (a list)."})
        if "route" in attrs and "model" in attrs:
            raise serializers.ValidationError({"route": "Give 'route' or 'model', not both."})
        messages, system = attrs["messages"] if "messages" in attrs else ((Message("user", attrs["message"]),), None)
        extra = attrs.get("system")
        if extra:
            system = f"{extra}\n\n{system}" if system else extra
        request = ChatRequest(
            messages=messages, system=system, max_tokens=attrs.get("max_tokens"), temperature=attrs.get("temperature")
        )
        return {
            "request": request,
            "route": attrs.get("route") or attrs.get("model") or "pam",
            "stream": attrs["stream"],
            "conversation_id": attrs.get("conversation_id"),
        }


class ChatOutput(FastOutputSerializer):
    content = serializers.CharField()
    model = serializers.CharField(help_text="The model that answered.")
    provider = serializers.CharField()
    route = serializers.CharField()
    source = serializers.CharField(help_text='"primary", or "fallback_N": the answer\'s place in the chain.')
    finish_reason = serializers.CharField(allow_null=True)
    usage = NativeUsageSerializer()
    cost_usd = serializers.FloatField(help_text="Exact cost of the answering attempt, in USD.")
    latency_ms = serializers.IntegerField()
    attempts = AttemptSerializer(many=True)
    request_id = serializers.CharField()
    conversation_id = serializers.CharField(allow_null=True)

    def represent(self, answer: ChatAnswer) -> dict:
        result = answer.result
        tokens = (result.input_tokens, result.output_tokens)
        return {"content": result.text, **self.metadata(answer, result.finish_reason, tokens, answer.latency_ms)}

    def metadata(self, answer, finish_reason: str | None, tokens: tuple[int, int], latency_ms: int) -> dict:
        """What an answer says besides its content (``answer``: a ChatAnswer or a RouteStream)."""
        return {
            "model": answer.model.model_id,
            "provider": answer.model.provider.name,
            "route": answer.route.name,
            "source": answer.source,
            "finish_reason": finish_reason,
            "usage": {"input_tokens": tokens[0], "output_tokens": tokens[1]},
            "cost_usd": float(answer.cost),
            "latency_ms": latency_ms,
            "attempts": attempts_out(answer.attempts),
            "request_id": self.context["request_id"],
            "conversation_id": self.context["conversation_id"],
        }


class StreamSummary(ChatOutput):
    """The ``done`` event of a stream: the plain answer's metadata, without its content."""

    content = None
    ttft_ms = serializers.IntegerField(help_text="Time to the first token of the answering model.")

    def represent(self, chat: ChatStream) -> dict:
        stream = chat.stream
        return {
            **self.metadata(stream, stream.finish_reason, stream.tokens, chat.latency_ms),
            "ttft_ms": stream.ttft_ms,
        }


class ChatView(HubView):
    """Answer from the route's first model that can."""

    InputSerializer = ChatInput
    OutputSerializer = ChatOutput

    @extend_schema(
        operation_id="pam_chat",
        tags=["chat"],
        request=ChatInput,
        responses={**answer_or_events(ChatOutput, SSE_NATIVE), **NATIVE_ERRORS},
    )
    async def post(self, request):
        call, data = self.chat_call(request)
        context = {"request_id": self.request_id, "conversation_id": data["conversation_id"]}
        if data["stream"]:
            return sse_response(native_events(await chat_stream(call), context))
        return Response(self.OutputSerializer(await chat_complete(call), context=context).data)


def sse_response(events, **headers) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not hold the events back
    for name, value in headers.items():
        response[name] = value
    return response


async def native_events(chat: ChatStream, context: dict):
    """``event: delta`` per text delta, then ``event: done`` with the metadata of a plain
    answer, or ``event: error`` when the answer was cut."""
    async for text in chat.deltas():
        yield b'event: delta\ndata: {"content":' + orjson.dumps(text) + b"}\n\n"
    summary = StreamSummary(chat, context=context).data
    error = chat.stream.error
    if error is not None:
        body = {"error": {"type": "stream_error", "kind": error.kind.value, "message": error.message}, **summary}
        yield b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"
        return
    yield b"event: done\ndata: " + orjson.dumps(summary) + b"\n\n"


class HealthOutput(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded"])
    checks = serializers.DictField(
        child=serializers.CharField(), help_text='database, cache, broker: "ok", "eager" or "error: <kind>".'
    )


class HealthView(APIView):
    """Liveness (it answers) and readiness (its dependencies answer); 503 when one fails."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    OutputSerializer = HealthOutput

    @extend_schema(operation_id="health", tags=["health"], responses={200: HealthOutput, 503: HealthOutput})
    def get(self, request):
        checks = {
            "database": _check(_database_probe),
            "cache": _check(_cache_probe),
            "broker": "eager" if settings.CELERY_TASK_ALWAYS_EAGER else _check(_broker_probe),
        }
        ready = all(v in ("ok", "eager") for v in checks.values())
        body = {"status": "ok" if ready else "degraded", "checks": checks}
        return Response(self.OutputSerializer(body).data, status=200 if ready else 503)


def _check(probe) -> str:
    try:
        probe()
    except Exception as exc:  # noqa: BLE001 - any failure makes the check fail
        return f"error: {type(exc).__name__}"
    return "ok"


def _database_probe():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _cache_probe():
    from django.core.cache import cache

    cache.set("modelhub:health", "1", 10)
    if cache.get("modelhub:health") != "1":
        raise RuntimeError("cache did not return the value written")


def _broker_probe():
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1).ping()

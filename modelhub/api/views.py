"""The native chat endpoint (``POST /api/v1/pam/chat``) and the health endpoint. The chat
view parses, calls the chat service, and formats: an answer, or server-sent events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from ..chat import ChatAnswer, ChatCall, ChatStream, chat_complete, chat_stream
from ..conversations import Memory, memory_open
from ..providers.base import Message
from ..routing.explain import routing_explained
from ..runtime import runtime
from .base import HubView
from .content import MessagesField, RequestOptions
from .errors import ServiceUnavailable
from .fields import (
    StrictBooleanField,
    StrictCharField,
    TextField,
    max_tokens_field,
    route_name_field,
    temperature_field,
)
from .schema import NATIVE_ERRORS, SSE_NATIVE, answer_or_events
from .serializers import (
    AttemptSerializer,
    FastOutputSerializer,
    NativeUsageSerializer,
    attempts_out,
    tool_calls_out,
    tool_deltas_out,
)

CONVERSATION_UNAVAILABLE = "The conversation's history cannot be read (database unavailable); try again shortly."


class ChatInput(RequestOptions):
    message = TextField(required=False, help_text="The user's message (or give messages).")
    messages = MessagesField(required=False)
    system = StrictCharField(required=False, allow_null=True, allow_blank=True, trim_whitespace=False)
    route = route_name_field(required=False, help_text='A route name (default "pam") or a model id.')
    model = route_name_field(required=False, help_text="Accepted instead of route.")
    stream = StrictBooleanField(required=False, default=False, help_text="Answer as server-sent events.")
    max_tokens = max_tokens_field(help_text="Clamped to the answering model's maximum.")
    temperature = temperature_field()
    conversation_id = StrictCharField(
        required=False,
        allow_null=True,
        max_length=200,
        error_messages={"max_length": "At most 200 characters."},
        help_text="Continue this conversation of the key's: its earlier turns are prepended (as many as fit the "
        "answering model's context window, the oldest dropped first) unless the messages hold an answer already; "
        "the new messages and the answer are kept under it (GET /api/v1/pam/conversations/<id>).",
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
        request = self.chat_request(attrs, messages, system, attrs.get("max_tokens"))
        return {
            "request": request,
            "route": attrs.get("route") or attrs.get("model") or self.context.get("default_route", "pam"),
            "stream": attrs["stream"],
            "conversation_id": attrs.get("conversation_id"),
        }


class ChatOutput(FastOutputSerializer):
    content = serializers.CharField(help_text="The answer's text (empty when it is tool calls only).")
    tool_calls = serializers.ListField(
        child=serializers.DictField(),
        help_text='The tools the model calls, in OpenAI\'s shape: [{"id", "type": "function", '
        '"function": {"name", "arguments": "<JSON>"}}]; empty when none.',
    )
    model = serializers.CharField(help_text="The model that answered.")
    provider = serializers.CharField()
    route = serializers.CharField()
    source = serializers.CharField(help_text='"primary", or "fallback_N": the answer\'s place in the chain.')
    finish_reason = serializers.CharField(allow_null=True)
    usage = NativeUsageSerializer()
    cost_usd = serializers.FloatField(help_text="Exact cost of the answering attempt, in USD.")
    latency_ms = serializers.IntegerField()
    attempts = AttemptSerializer(many=True)
    routing = serializers.DictField(
        help_text="Why the request went where it went: the override in force, the strategy, tier and "
        "category, the canary arm, the order walked and each model skipped with its reason."
    )
    request_id = serializers.CharField()
    conversation_id = serializers.CharField(allow_null=True)

    def represent(self, answer: ChatAnswer) -> dict:
        result = answer.result
        tokens = (result.input_tokens, result.output_tokens)
        return {
            "content": result.text,
            "tool_calls": tool_calls_out(result.tool_calls),
            **self.metadata(answer, result.finish_reason, tokens, answer.latency_ms),
        }

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
            "routing": routing_explained(answer.failover),
            "request_id": self.context["request_id"],
            "conversation_id": self.context["conversation_id"],
        }


class StreamSummary(ChatOutput):
    """The ``done`` event of a stream: the plain answer's metadata and its whole tool
    calls, without its text."""

    content = None
    ttft_ms = serializers.IntegerField(help_text="Time to the first token of the answering model.")

    def represent(self, chat: ChatStream) -> dict:
        stream = chat.stream
        return {
            "tool_calls": tool_calls_out(stream.tool_calls),
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
        memory = None if call.conversation_id is None else await conversation_memory(call)
        if memory is not None:
            call = memory.call_with(call)
        context = {"request_id": self.request_id, "conversation_id": data["conversation_id"]}
        if data["stream"]:
            chat = await chat_stream(call)
            return sse_response(native_events(chat, context, memory), chat, memory)
        answer = await chat_complete(call)
        if memory is not None:
            await memory.answered(answer)
        return Response(self.OutputSerializer(answer, context=context).data)


async def conversation_memory(call: ChatCall) -> Memory | None:
    """The call's conversation; 503 when its history cannot be read: an answer without it
    would answer another question."""
    try:
        return await memory_open(call)
    except DatabaseError:
        raise ServiceUnavailable(CONVERSATION_UNAVAILABLE) from None


class ChatEvents:
    """A streamed answer's server-sent events, as Django streams them. Django's ASGI handler
    calls ``close()`` once the response is over, however it ended, but closes neither
    events that never started (the client left while the answer's start was being sent)
    nor the iterators under those it stops. ``close()`` ends the chat stream in the event
    loop, so that the attempt is recorded, its upstream call cancelled and its cost settled,
    then records the conversation's turn as far as it was answered, unless the events did."""

    def __init__(self, events: AsyncIterator[bytes], chat: ChatStream, memory: Memory | None = None):
        self._events, self._chat, self._memory = events, chat, memory

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events

    def close(self) -> None:
        if not self._chat.closed:  # run in a worker thread: Django closes with sync_to_async
            async_to_sync(self._chat.aclose)()
        if self._memory is not None:
            self._memory.streamed_sync(self._chat)

    async def aclose(self) -> None:
        """``close`` on the event loop (the chat endpoints' handler, ``api.asgi``)."""
        if not self._chat.closed:
            await self._chat.aclose()
        if self._memory is not None:
            await self._memory.streamed(self._chat)


class EventStreamResponse(StreamingHttpResponse):
    """A streamed answer's response; ``events`` is what ends it (``ChatEvents.aclose``)."""

    def __init__(self, events: ChatEvents):
        super().__init__(events, content_type="text/event-stream")
        self.events = events


def sse_response(
    events: AsyncIterator[bytes], chat: ChatStream, memory: Memory | None = None, **headers
) -> StreamingHttpResponse:
    response = EventStreamResponse(ChatEvents(events, chat, memory))
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not hold the events back
    for name, value in headers.items():
        response[name] = value
    return response


async def native_events(chat: ChatStream, context: dict, memory: Memory | None = None):
    """``event: delta`` per text delta (``{"content"}``) or tool-call deltas
    (``{"tool_calls"}``, OpenAI's delta shape), then ``event: done`` with the metadata of a
    plain answer, or ``event: error`` when the answer was cut. A conversation's turn is
    recorded before that last event, so the next turn, wherever it lands, finds it."""
    heard = memory.heard if memory is not None else None
    async for piece in chat.deltas():
        if type(piece) is str:
            if heard is not None:
                heard.append(piece)
            yield b'event: delta\ndata: {"content":' + orjson.dumps(piece) + b"}\n\n"
        else:
            yield b'event: delta\ndata: {"tool_calls":' + orjson.dumps(tool_deltas_out(piece)) + b"}\n\n"
    summary = StreamSummary(chat, context=context).data
    if memory is not None:
        await memory.streamed(chat)
    error = chat.stream.error
    if error is not None:
        body = {"error": {"type": "stream_error", "kind": error.kind.value, "message": error.message}, **summary}
        yield b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"
        return
    yield b"event: done\ndata: " + orjson.dumps(summary) + b"\n\n"


class HealthOutput(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["ok", "degraded", "unavailable"],
        help_text='"degraded": a dependency failed, chat still answers from the routing snapshot; '
        '"unavailable" (503): the database failed and this process has no snapshot yet.',
    )
    checks = serializers.DictField(
        child=serializers.CharField(), help_text='database, cache, broker: "ok", "eager" or "error: <kind>".'
    )


class HealthView(APIView):
    """Liveness (it answers) and readiness (it can answer chat). A failed dependency makes
    the status "degraded" and names it, but stays 200 while this process holds a routing
    snapshot: chat keeps answering from it (the ledger queues, limits fail open or closed as
    set), and a load balancer that took every worker out over a shared Redis or database
    outage would turn a degraded hub into a dead one. 503 only when chat cannot answer."""

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
        status = health_status(checks, routing=runtime().routing.snapshot is not None)
        body = {"status": status, "checks": checks}
        return Response(self.OutputSerializer(body).data, status=503 if status == "unavailable" else 200)


def health_status(checks: dict[str, str], *, routing: bool) -> str:
    """Unavailable only when chat cannot answer: this process has no routing snapshot
    (``routing`` false) and none can be built (the database failed)."""
    if all(v in ("ok", "eager") for v in checks.values()):
        return "ok"
    return "degraded" if routing or checks["database"] == "ok" else "unavailable"


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

"""HTTP endpoints. The chat view is a plain async Django view: the hot path stays async
end to end and does no database query (routing, keys and health come from the snapshot)."""
from __future__ import annotations

import contextlib
import logging
import os
import time

import orjson
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..limits import (
    LimitExceeded,
    limits_check,
    route_permit,
    spend_add,
    spend_add_soon,
)
from ..routing.router import RouteAnswer, RoutingError, route_chat
from ..routing.snapshot import KeySpec, Snapshot
from ..runtime import runtime
from ..routing.streaming import RouteStream, route_stream
from ..services import api_key_hash
from .auth import bearer_token
from .validation import InvalidRequest, chat_input_parse

log = logging.getLogger("modelhub.api")
UNAVAILABLE = "The hub's configuration cannot be read (database unavailable); try again shortly."


def new_request_id() -> str:
    return os.urandom(16).hex()


async def current_snapshot() -> Snapshot | None:
    """The routing snapshot, or None when there is none yet and the database is down."""
    try:
        return await runtime().routing.current()
    except DatabaseError:
        log.exception("no routing configuration: the database is unavailable")
        return None


def json_response(data: dict, status: int = 200, request_id: str | None = None) -> HttpResponse:
    response = HttpResponse(orjson.dumps(data), status=status, content_type="application/json")
    if request_id:
        response["X-Request-ID"] = request_id
    return response


def error_response(status: int, code: str, message: str, request_id: str | None = None,
                   **extra) -> HttpResponse:
    body = {"error": {"type": code, "message": message, **extra}}
    if request_id:
        body["request_id"] = request_id
    response = json_response(body, status, request_id)
    if status == 401:
        response["WWW-Authenticate"] = "Bearer"
    return response


def key_of(request, snapshot: Snapshot) -> KeySpec | None:
    token = bearer_token(request.META.get("HTTP_AUTHORIZATION"))
    return snapshot.keys.get(api_key_hash(token)) if token else None


async def limits_enforce(*, key: KeySpec, route: str) -> None:
    """The key's route list, minute and day; free for a key without limits."""
    route_permit(key=key, route=route)
    if key.rpm_limit is not None or key.daily_budget_usd is not None:
        await limits_check(key=key)


def limit_response(exc: LimitExceeded, response: HttpResponse) -> HttpResponse:
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    return response


def sse_response(events, request_id: str, **headers) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not hold the events back
    response["X-Request-ID"] = request_id
    for name, value in headers.items():
        response[name] = value
    return response


async def stream_settle(stream: RouteStream, key: KeySpec) -> None:
    """After a stream's last delta: its cost counts against the key's budget."""
    if key.daily_budget_usd is not None:
        await spend_add(key=key, cost=stream.cost)


@contextlib.asynccontextmanager
async def stream_deltas(stream: RouteStream, key: KeySpec):
    """The stream's deltas, closed (upstream cancelled, usage recorded) when the client
    goes away; what it cost still counts against the key's budget."""
    deltas = stream.deltas()
    try:
        yield deltas
    except BaseException:
        await deltas.aclose()
        spend_add_soon(key=key, cost=stream.cost)
        raise


def body_read(request) -> bytes:
    limit = settings.MODELHUB["MAX_BODY_BYTES"]
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidRequest("Invalid Content-Length header.") from None
    if declared > limit:
        raise InvalidRequest(f"Request body is larger than {limit} bytes.", status=413)
    body = request.body
    if len(body) > limit:
        raise InvalidRequest(f"Request body is larger than {limit} bytes.", status=413)
    return body


def chat_answer(answer: RouteAnswer, request_id: str, conversation_id: str | None, latency_ms: int) -> dict:
    result = answer.result
    return {
        "content": result.text,
        "model": answer.model.model_id,
        "provider": answer.model.provider.name,
        "route": answer.route.name,
        "source": answer.source,
        "finish_reason": result.finish_reason,
        "usage": {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens},
        "cost_usd": float(answer.cost),
        "latency_ms": latency_ms,
        "attempts": [a.as_dict() for a in answer.attempts],
        "request_id": request_id,
        "conversation_id": conversation_id,
    }


@csrf_exempt
async def chat(request):
    """POST /api/v1/pam/chat: answer from the route's first model that can."""

    started = time.perf_counter()
    request_id = new_request_id()
    if request.method != "POST":
        return error_response(405, "method_not_allowed", "Use POST.", request_id)
    snapshot = await current_snapshot()
    if snapshot is None:
        return error_response(503, "service_unavailable", UNAVAILABLE, request_id)
    key = key_of(request, snapshot)
    if key is None:
        return error_response(401, "authentication_error",
                              "Missing or invalid API key (Authorization: Bearer <key>).", request_id)
    try:
        data = chat_input_parse(body_read(request), max_messages=settings.MODELHUB["MAX_MESSAGES"])
        await limits_enforce(key=key, route=data.route)
        if data.stream:
            stream = await route_stream(snapshot=snapshot, route_name=data.route, request=data.request,
                                        key=key, request_id=request_id)
            return sse_response(native_events(stream, key, data.conversation_id, started), request_id)
        answer = await route_chat(snapshot=snapshot, route_name=data.route, request=data.request,
                                  key=key, request_id=request_id)
    except InvalidRequest as exc:
        return error_response(exc.status, "invalid_request_error", exc.message, request_id, param=exc.param)
    except LimitExceeded as exc:
        return limit_response(exc, error_response(exc.status, exc.code, exc.message, request_id))
    except RoutingError as exc:
        return routing_error_response(exc, request_id)
    if key.daily_budget_usd is not None:
        await spend_add(key=key, cost=answer.cost)
    latency_ms = int((time.perf_counter() - started) * 1000)
    return json_response(chat_answer(answer, request_id, data.conversation_id, latency_ms), 200, request_id)


def routing_error_response(exc: RoutingError, request_id: str) -> HttpResponse:
    extra = {"attempts": [a.as_dict() for a in exc.attempts]}
    if exc.details is not None:
        extra["models"] = exc.details
    return error_response(exc.status, exc.code, exc.message, request_id, **extra)


def stream_summary(stream: RouteStream, conversation_id: str | None, latency_ms: int) -> dict:
    """What the plain answer says besides its content, for the stream's last event."""
    tokens_in, tokens_out = stream.tokens
    return {
        "model": stream.model.model_id, "provider": stream.model.provider.name,
        "route": stream.route.name, "source": stream.source, "finish_reason": stream.finish_reason,
        "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
        "cost_usd": float(stream.cost), "latency_ms": latency_ms, "ttft_ms": stream.ttft_ms,
        "attempts": [a.as_dict() for a in stream.attempts],
        "request_id": stream.failover.request_id, "conversation_id": conversation_id,
    }


async def native_events(stream: RouteStream, key: KeySpec, conversation_id: str | None, started: float):
    """``event: delta`` per text delta, then ``event: done`` with the metadata of a plain
    answer, or ``event: error`` when the answer was cut."""
    async with stream_deltas(stream, key) as deltas:
        async for text in deltas:
            yield b'event: delta\ndata: {"content":' + orjson.dumps(text) + b"}\n\n"
    await stream_settle(stream, key)
    if stream.error is not None:
        error = {"type": "stream_error", "kind": stream.error.kind.value, "message": stream.error.message}
        body = {"error": error, **stream_summary(stream, conversation_id, _ms_since(started))}
        yield b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"
        return
    yield b"event: done\ndata: " + orjson.dumps(stream_summary(stream, conversation_id, _ms_since(started))) + b"\n\n"


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


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
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1).ping()


def health(request):
    """GET /api/v1/health: liveness (it answers) and readiness (its dependencies answer)."""
    checks = {"database": _check(_database_probe), "cache": _check(_cache_probe),
              "broker": "eager" if settings.CELERY_TASK_ALWAYS_EAGER else _check(_broker_probe)}
    ready = all(v in ("ok", "eager") for v in checks.values())
    return json_response({"status": "ok" if ready else "degraded", "checks": checks}, 200 if ready else 503)

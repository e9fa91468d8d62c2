"""HTTP endpoints. The chat view is a plain async Django view: the hot path stays async
end to end and does no database query (routing, keys and health come from the snapshot)."""
from __future__ import annotations

import time
import uuid

import orjson
from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..routing.router import RouteAnswer, RoutingError, route_chat
from ..routing.state import routing_state
from ..services import api_key_hash
from .auth import bearer_token
from .validation import InvalidRequest, chat_input_parse


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
    request_id = uuid.uuid4().hex
    if request.method != "POST":
        return error_response(405, "method_not_allowed", "Use POST.", request_id)
    snapshot = await routing_state().current()
    token = bearer_token(request.META.get("HTTP_AUTHORIZATION"))
    key = snapshot.keys.get(api_key_hash(token)) if token else None
    if key is None:
        return error_response(401, "authentication_error",
                              "Missing or invalid API key (Authorization: Bearer <key>).", request_id)
    try:
        data = chat_input_parse(body_read(request), max_messages=settings.MODELHUB["MAX_MESSAGES"])
        if data.stream:
            raise InvalidRequest("Streaming is not available on this endpoint yet.", "stream")
        answer = await route_chat(snapshot=snapshot, route_name=data.route, request=data.request,
                                  key=key, request_id=request_id)
    except InvalidRequest as exc:
        return error_response(exc.status, "invalid_request_error", exc.message, request_id, param=exc.param)
    except RoutingError as exc:
        extra = {"attempts": [a.as_dict() for a in exc.attempts]}
        if exc.details is not None:
            extra["models"] = exc.details
        return error_response(exc.status, exc.code, exc.message, request_id, **extra)
    latency_ms = int((time.perf_counter() - started) * 1000)
    return json_response(chat_answer(answer, request_id, data.conversation_id, latency_ms), 200, request_id)


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

"""The OpenAI-compatible API: ``POST /v1/chat/completions`` and ``GET /v1/models``, so
that the official OpenAI SDKs and the tools built on them work unchanged. ``model`` names a
route or a model id; the answer's ``model`` is the model that answered. Plain async views
with orjson, no database query (DESIGN.md, "Hot path")."""
from __future__ import annotations

import time

import orjson
from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..limits import LimitExceeded, spend_add
from ..routing.router import RouteAnswer, RoutingError, route_chat
from ..routing.snapshot import KeySpec, Snapshot
from ..routing.streaming import RouteStream, route_stream
from .validation import CompletionInput, InvalidRequest, completion_input_parse
from .views import (
    UNAVAILABLE,
    body_read,
    current_snapshot,
    json_response,
    key_of,
    limit_response,
    limits_enforce,
    new_request_id,
    sse_response,
    stream_deltas,
    stream_settle,
)

# HTTP status -> OpenAI's error type (the SDK picks its exception class by status).
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
               429: "rate_limit_error", 503: "server_error", 504: "timeout_error"}
ROUTING_CODES = {"unknown_route": "model_not_found"}
DONE = b"data: [DONE]\n\n"


def openai_error(status: int, message: str, *, code: str | None = None, param: str | None = None,
                 request_id: str | None = None, **extra) -> HttpResponse:
    error = {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": param,
             "code": code, **extra}
    response = json_response({"error": error}, status, request_id)
    if status == 401:
        response["WWW-Authenticate"] = "Bearer"
    return response


def _unauthorized(request_id: str) -> HttpResponse:
    return openai_error(401, "Missing or invalid API key (Authorization: Bearer <key>).",
                        code="invalid_api_key", request_id=request_id)


async def _caller(request, method: str):
    """(request_id, snapshot, key, None) for an authenticated request with the right
    method, or (request_id, None, None, the error answer)."""
    request_id = new_request_id()
    if request.method != method:
        return request_id, None, None, openai_error(405, f"Use {method}.", request_id=request_id)
    snapshot = await current_snapshot()
    if snapshot is None:
        return request_id, None, None, openai_error(503, UNAVAILABLE, request_id=request_id)
    key = key_of(request, snapshot)
    if key is None:
        return request_id, None, None, _unauthorized(request_id)
    return request_id, snapshot, key, None


@csrf_exempt
async def chat_completions(request):
    """POST /v1/chat/completions"""
    request_id, snapshot, key, refusal = await _caller(request, "POST")
    if refusal is not None:
        return refusal
    try:
        data = completion_input_parse(body_read(request), max_messages=settings.MODELHUB["MAX_MESSAGES"])
        await limits_enforce(key=key, route=data.model)
        if data.stream:
            return await _stream(snapshot, data, key, request_id)
        answer = await route_chat(snapshot=snapshot, route_name=data.model, request=data.request,
                                  key=key, request_id=request_id)
    except InvalidRequest as exc:
        return openai_error(exc.status, exc.message, param=exc.param, request_id=request_id)
    except LimitExceeded as exc:
        return limit_response(exc, openai_error(exc.status, exc.message, code=exc.code, request_id=request_id))
    except RoutingError as exc:
        return _routing_error(exc, request_id)
    if key.daily_budget_usd is not None:
        await spend_add(key=key, cost=answer.cost)
    response = json_response(completion(answer, request_id), 200, request_id)
    response["x-modelhub-route"] = answer.route.name
    response["x-modelhub-attempts"] = str(len(answer.attempts))
    return response


def _routing_error(exc: RoutingError, request_id: str) -> HttpResponse:
    response = openai_error(
        exc.status, exc.message, code=ROUTING_CODES.get(exc.code, exc.code),
        param="model" if exc.status == 404 else None, request_id=request_id,
        attempts=[a.as_dict() for a in exc.attempts], **({"models": exc.details} if exc.details else {}))
    response["x-modelhub-attempts"] = str(len(exc.attempts))
    return response


def completion(answer: RouteAnswer, request_id: str) -> dict:
    result = answer.result
    return {
        "id": f"chatcmpl-{request_id}", "object": "chat.completion", "created": int(time.time()),
        "model": answer.model.model_id,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                     "logprobs": None, "finish_reason": result.finish_reason or "stop"}],
        "usage": {"prompt_tokens": result.input_tokens, "completion_tokens": result.output_tokens,
                  "total_tokens": result.input_tokens + result.output_tokens},
    }


async def _stream(snapshot: Snapshot, data: CompletionInput, key: KeySpec, request_id: str):
    stream = await route_stream(snapshot=snapshot, route_name=data.model, request=data.request,
                                key=key, request_id=request_id)
    return sse_response(completion_events(stream, key, data.include_usage), request_id, **{
        "x-modelhub-route": stream.route.name, "x-modelhub-attempts": str(len(stream.attempts) + 1)})  # + the one answering


async def completion_events(stream: RouteStream, key: KeySpec, include_usage: bool):
    """chat.completion.chunk events, built from a per-stream prefix (one orjson call per
    delta); a failure after content ends the stream with an ``error`` event, which the
    OpenAI SDK raises as APIError."""
    head = b"".join((b'data: {"id":"chatcmpl-', stream.failover.request_id.encode(),
                     b'","object":"chat.completion.chunk","created":', str(int(time.time())).encode(),
                     b',"model":', orjson.dumps(stream.model.model_id)))
    delta = head + b',"choices":[{"index":0,"delta":{"content":'
    first = head + b',"choices":[{"index":0,"delta":{"role":"assistant","content":'
    async with stream_deltas(stream, key) as deltas:
        async for text in deltas:
            yield (first if first else delta) + orjson.dumps(text) + b'},"finish_reason":null}]}\n\n'
            first = None
    await stream_settle(stream, key)
    if stream.error is not None:
        error = {"message": f"The answer was cut: {stream.error.message}", "type": "server_error",
                 "param": None, "code": stream.error.kind.value}
        yield b"data: " + orjson.dumps({"error": error}) + b"\n\n"
        return
    if first:  # an empty answer still names its role
        yield first + b'""},"finish_reason":null}]}\n\n'
    yield head + b',"choices":[{"index":0,"delta":{},"finish_reason":' + orjson.dumps(
        stream.finish_reason or "stop") + b"}]}\n\n"
    if include_usage:
        tokens_in, tokens_out = stream.tokens
        usage = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}
        yield head + b',"choices":[],"usage":' + orjson.dumps(usage) + b"}\n\n"
    yield DONE


@csrf_exempt
async def models(request):
    """GET /v1/models: the routes this key may use, then every enabled model."""
    request_id, snapshot, key, refusal = await _caller(request, "GET")
    if refusal is not None:
        return refusal
    return json_response({"object": "list", "data": model_list(snapshot, key)}, 200, request_id)


def model_list(snapshot: Snapshot, key: KeySpec) -> list[dict]:
    listed = [{"id": route.name, "object": "model", "created": 0, "owned_by": "modelhub-route"}
              for route in snapshot.routes.values() if route.enabled and route.chain and key.may_use(route.name)]
    listed += [{"id": name, "object": "model", "created": 0, "owned_by": spec.provider.name}
               for name, spec in snapshot.models.items()
               if name == spec.model_id and name not in snapshot.routes and key.may_use(name)]
    return listed

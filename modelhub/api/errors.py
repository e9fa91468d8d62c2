"""One exception handler for every API view, in two error shapes.

native (the hub's own endpoints)  {"error": {"type", "message", "param"?, ...}, "request_id"}
openai (``/v1/``)                 {"error": {"message", "type", "param", "code", ...}}

Whatever goes wrong becomes an ``ApiError`` first (status, code, message, the field at
fault, extra detail, headers); the view's ``error_format`` picks the shape."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions

from ..limits import LimitExceeded
from ..routing.router import RoutingError

log = logging.getLogger("modelhub.api")

NATIVE, OPENAI = "native", "openai"
UNAUTHORIZED = "Missing or invalid API key (Authorization: Bearer <key>)."
UNAVAILABLE = "The hub's configuration cannot be read (database unavailable); try again shortly."
# HTTP status -> OpenAI's error type (the SDK picks its exception class by status).
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_error",
    504: "timeout_error",
}
OPENAI_CODES = {
    "unknown_route": "model_not_found",
    "authentication_error": "invalid_api_key",
    "invalid_request_error": None,
    "method_not_allowed": None,
    "not_found": "not_found",
}
NATIVE_CODES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "invalid_request_error",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
    503: "service_unavailable",
}


class ServiceUnavailable(exceptions.APIException):
    status_code, default_detail, default_code = 503, UNAVAILABLE, "service_unavailable"


class RequestTooLarge(exceptions.APIException):
    status_code, default_code = 413, "invalid_request_error"


@dataclass(slots=True)
class ApiError:
    status: int
    code: str
    message: str
    param: str | None = None
    extra: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)


def api_error_of(exc: Exception) -> ApiError | None:
    """The ApiError an exception stands for; None for a bug (answered 500)."""
    if isinstance(exc, Http404):  # Django's own, as DRF's handler converts them
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    if isinstance(exc, RoutingError):
        extra = {"attempts": [a.as_dict() for a in exc.attempts]}
        if exc.details is not None:
            extra["models"] = exc.details
        return ApiError(
            exc.status,
            exc.code,
            exc.message,
            "model" if exc.status == 404 else None,
            extra,
            {"x-modelhub-attempts": str(len(exc.attempts))},
        )
    if isinstance(exc, LimitExceeded):
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
        return ApiError(exc.status, exc.code, exc.message, headers=headers)
    if isinstance(exc, exceptions.APIException):
        return _from_drf(exc)
    return None


def _from_drf(exc: exceptions.APIException) -> ApiError:
    status = exc.status_code
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        # A refusal raised with its reason (an expired key) says it; any other stays vague.
        message = UNAUTHORIZED if str(exc.detail) == str(exc.default_detail) else str(exc.detail)
        return ApiError(401, "authentication_error", message, headers={"WWW-Authenticate": "Bearer"})
    param, message = _first_detail(exc.detail)
    headers = {"Retry-After": str(int(exc.wait))} if isinstance(exc, exceptions.Throttled) and exc.wait else {}
    return ApiError(status, NATIVE_CODES.get(status, "error"), message, param, headers=headers)


def _first_detail(detail) -> tuple[str | None, str]:
    """(the field at fault, its first message) from DRF's nested detail; the innermost key
    names the place (fields raise ``{"messages[0].role": [...]}``)."""
    param = None
    while isinstance(detail, (dict, list)) and detail:
        if isinstance(detail, dict):
            key, detail = next(iter(detail.items()))
            param = param if key == "non_field_errors" else key
        else:
            detail = detail[0]
    return param, str(detail)


def native_body(error: ApiError, request_id: str | None) -> dict:
    body: dict = {"error": {"type": error.code, "message": error.message, **error.extra}}
    if error.param is not None:
        body["error"]["param"] = error.param
    if request_id:
        body["request_id"] = request_id
    return body


def openai_body(error: ApiError) -> dict:
    code = OPENAI_CODES.get(error.code, error.code)
    return {
        "error": {
            "message": error.message,
            "type": OPENAI_TYPES.get(error.status, "server_error"),
            "param": error.param,
            "code": code,
            **error.extra,
        }
    }


def error_body(error: ApiError, *, error_format: str, request_id: str | None) -> dict:
    return openai_body(error) if error_format == OPENAI else native_body(error, request_id)


def hub_exception_handler(exc: Exception, context: dict):
    """DRF's exception handler for the API views: the view's error shape, never a traceback."""
    from rest_framework.response import Response

    view = context.get("view")
    error = api_error_of(exc)
    if error is None:
        log.exception("unexpected error in %s", type(view).__name__)
        error = ApiError(500, "internal_error", "The hub failed to handle this request; it is logged.")
    body = error_body(
        error, error_format=getattr(view, "error_format", NATIVE), request_id=getattr(view, "request_id", None)
    )
    return Response(body, status=error.status, headers=error.headers)


def json_not_found(request, exception=None):
    """handler404: a JSON 404 in the API's shape under /v1/ and /api/, else Django's page."""
    path = request.path
    if not path.startswith(("/v1/", "/api/")):
        return page_not_found(request, exception)
    error = ApiError(404, "not_found", f"No endpoint at {path}.")
    body = openai_body(error) if path.startswith("/v1/") else native_body(error, None)
    return HttpResponse(orjson.dumps(body), status=404, content_type="application/json")

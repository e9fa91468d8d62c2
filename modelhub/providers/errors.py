"""SDK exceptions to ProviderError, one small function per SDK.

Classify by HTTP status first. The message is read only to tell a context-length 400
from other 400s, and only when the provider gives no code for it. The SDKs are imported
inside their function: importing all three costs ~2 s and an adapter needs only one."""

from __future__ import annotations

import email.utils
import math
import time
from datetime import UTC
from typing import Any

import aiohttp
import httpx2

from .base import ErrorKind, ProviderError, ProviderSpec

K = ErrorKind

_STATUS_KINDS = {
    400: K.BAD_REQUEST,
    413: K.BAD_REQUEST,
    422: K.BAD_REQUEST,
    401: K.AUTH,
    402: K.AUTH,
    403: K.AUTH,
    404: K.NOT_FOUND,
    410: K.NOT_FOUND,
    408: K.TIMEOUT,
    429: K.RATE_LIMITED,
    503: K.OVERLOADED,
    529: K.OVERLOADED,
}

# Anthropic names the error in the body, also when a 200 stream fails midway.
_ANTHROPIC_TYPES = {
    "invalid_request_error": K.BAD_REQUEST,
    "request_too_large": K.BAD_REQUEST,
    "authentication_error": K.AUTH,
    "permission_error": K.AUTH,
    "billing_error": K.AUTH,
    "not_found_error": K.NOT_FOUND,
    "rate_limit_error": K.RATE_LIMITED,
    "timeout_error": K.TIMEOUT,
    "overloaded_error": K.OVERLOADED,
    "api_error": K.SERVER,
}

_STREAM_ERROR_KINDS = {
    **_ANTHROPIC_TYPES,
    "rate_limit_exceeded": K.RATE_LIMITED,
    "requests": K.RATE_LIMITED,
    "tokens": K.RATE_LIMITED,
    "server_error": K.SERVER,
    "context_length_exceeded": K.CONTEXT_TOO_LONG,
}
_CONTEXT_CODES = frozenset({"context_length_exceeded"})
_CONTEXT_PHRASES = (
    "context_length_exceeded",
    "maximum context length",
    "prompt is too long",
    "exceeds the maximum number of tokens",
    "context window",
)
_WAIT_KINDS = frozenset({K.RATE_LIMITED, K.OVERLOADED})
MESSAGE_LIMIT = 300
# C0 control characters, taken out of messages: the ledger stores them, and PostgreSQL
# refuses a NUL in text.
_CONTROLS = dict.fromkeys(range(0x20), " ")
_TIMEOUTS = (TimeoutError, httpx2.TimeoutException)  # aiohttp's timeouts are TimeoutErrors
_CONNECTION_FAILURES = (
    ConnectionError,
    aiohttp.ClientConnectorError,
    aiohttp.ServerDisconnectedError,
    httpx2.ConnectError,
)
# What an SDK may let through unwrapped (google-genai does; the OpenAI relay reads the raw
# response); TimeoutError is an OSError. httpx2's RequestError also covers a body that would
# not decode (DecodingError), which the SDKs report as a connection error.
TRANSPORT_ERRORS = (httpx2.RequestError, aiohttp.ClientError, OSError)


class ResponseTooLarge(aiohttp.ClientPayloadError):
    """An answer's body passed ``MODELHUB_MAX_RESPONSE_BYTES`` (raised below the SDKs, so it
    reaches every adapter as their transport's payload error): the provider's fault, a
    ``server`` error, not the connection's."""


def from_openai(exc: BaseException, *, secret: str | None = None) -> ProviderError:
    import openai

    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        return from_status(
            exc.status_code,
            body.get("message") or exc.message,
            headers=exc.response.headers,
            code=exc.code,
            original=exc,
            secret=secret,
        )
    if isinstance(exc, openai.APIConnectionError):
        return from_transport(exc, timeout=isinstance(exc, openai.APITimeoutError), secret=secret)
    if type(exc) is openai.APIError:  # a `data: {"error": ...}` event inside a 200 stream
        return from_stream_error(exc.body, exc.message, original=exc, secret=secret)
    return from_exception(exc, secret=secret)


def from_anthropic(exc: BaseException, *, secret: str | None = None) -> ProviderError:
    import anthropic

    if isinstance(exc, anthropic.APIStatusError):
        kind = _ANTHROPIC_TYPES.get(exc.type or "") if exc.status_code < 400 else None
        return from_status(
            exc.status_code,
            exc.api_message or exc.message,
            kind=kind,
            headers=exc.response.headers,
            code=exc.error_code,
            original=exc,
            secret=secret,
        )
    if isinstance(exc, anthropic.APIConnectionError):
        return from_transport(exc, timeout=isinstance(exc, anthropic.APITimeoutError), secret=secret)
    return from_exception(exc, secret=secret)


def from_google(exc: BaseException, *, secret: str | None = None) -> ProviderError:
    from google.genai import errors as genai_errors

    if isinstance(exc, genai_errors.APIError):
        return from_status(
            exc.code,
            exc.message or exc.status or str(exc),
            headers=getattr(exc.response, "headers", None),
            code=exc.status,
            retry_after=_google_retry_delay(exc.details),
            original=exc,
            secret=secret,
        )
    return from_exception(exc, secret=secret)


def from_stream_error(
    body: object, message: str, *, original: BaseException | None = None, secret: str | None = None
) -> ProviderError:
    """An error event in a stream that began with 200: kind by its type or code."""
    body = body if isinstance(body, dict) else {}
    names = {str(body.get("type") or ""), str(body.get("code") or "")}
    kind = next((_STREAM_ERROR_KINDS[n] for n in names if n in _STREAM_ERROR_KINDS), K.SERVER)
    return ProviderError(kind, _clean(f"stream error: {message}", secret), status=200, original=original)


def from_status(
    status: int | None,
    detail: object,
    *,
    kind: ErrorKind | None = None,
    headers=None,
    code: str | None = None,
    retry_after: float | None = None,
    original: BaseException | None = None,
    secret: str | None = None,
) -> ProviderError:
    """An HTTP error status (or a provider's own error type) to its kind."""
    kind = kind or (_STATUS_KINDS.get(status, K.SERVER) if status is not None else K.SERVER)
    if kind is K.BAD_REQUEST and is_context_error(code, detail):
        kind = K.CONTEXT_TOO_LONG
    wait = None
    if kind in _WAIT_KINDS:
        wait = retry_after_seconds(headers)
        wait = retry_after if wait is None else wait
    return ProviderError(
        kind, _clean(f"HTTP {status}: {detail}", secret), status=status, retry_after=wait, original=original
    )


def from_exception(exc: BaseException, *, secret: str | None = None) -> ProviderError:
    """What is left once the SDK's own classes are handled: raw transport errors and
    bodies that would not parse (google-genai passes both through unwrapped)."""
    if isinstance(exc, TRANSPORT_ERRORS):
        return from_transport(exc, secret=secret)
    return malformed(exc, secret=secret)


def from_transport(exc: BaseException, *, timeout: bool = False, secret: str | None = None) -> ProviderError:
    """Timeout or connection failure, decided by the innermost cause that tells: openai's
    aiohttp transport reports a refused connection as APITimeoutError (via ConnectTimeout).
    A body past the size cap is a server error, whatever wraps it."""
    root = exc
    too_large = next((c for c in _causes(exc) if isinstance(c, ResponseTooLarge)), None)
    if too_large is not None:
        return _error(K.SERVER, str(too_large), exc, secret)
    for cause in _causes(exc):
        if isinstance(cause, _TIMEOUTS):
            timeout, root = True, cause
        elif isinstance(cause, _CONNECTION_FAILURES):
            timeout, root = False, cause
    kind, what = (K.TIMEOUT, "timed out") if timeout else (K.CONNECTION, "connection failed")
    return _error(kind, f"{what}: {_describe(root)}", exc, secret)


def malformed(exc: BaseException, *, secret: str | None = None) -> ProviderError:
    """A 2xx answer that would not parse or lacks the fields every response carries."""
    return _error(K.SERVER, f"malformed response: {_describe(exc)}", exc, secret)


def is_context_error(code: str | None, detail: object) -> bool:
    if code in _CONTEXT_CODES:
        return True
    text = str(detail).lower()
    return any(phrase in text for phrase in _CONTEXT_PHRASES)


def retry_after_seconds(headers) -> float | None:
    """``retry-after-ms``, else ``retry-after`` in seconds or as an HTTP date."""
    if headers is None:
        return None
    millis = _seconds(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    seconds = _seconds(value)
    return seconds if seconds is not None else _seconds_until(value)


def require_api_key(provider: ProviderSpec) -> str:
    if not provider.api_key:
        raise ProviderError(K.AUTH, f"{provider.name}: no API key, set ${provider.api_key_env}")
    return provider.api_key


def _google_retry_delay(body: Any) -> float | None:
    """Gemini puts the wait in the body: error.details[].retryDelay, e.g. "38s"."""
    try:
        details = body["error"]["details"] if "error" in body else body["details"]
        delay = next(d["retryDelay"] for d in details if "retryDelay" in d)
    except (TypeError, KeyError, StopIteration):
        return None
    return _seconds(str(delay).removesuffix("s"))


def _causes(exc: BaseException | None):
    for _ in range(8):
        if exc is None:
            return
        yield exc
        exc = exc.__cause__


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no detail"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _error(kind: ErrorKind, message: str, exc: BaseException, secret: str | None) -> ProviderError:
    return ProviderError(kind, _clean(message, secret), original=exc)


def _clean(message: str, secret: str | None) -> str:
    if secret:
        message = message.replace(secret, "***")
    message = " ".join(message.translate(_CONTROLS).split())
    return message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 1] + "…"


def _seconds(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _seconds_until(http_date: str | None) -> float | None:
    if not http_date:
        return None
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())

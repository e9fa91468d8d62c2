import email.utils
import json
import time

import aiohttp
import httpx2
import pytest

from modelhub.providers import errors
from modelhub.providers.base import ErrorKind

from .conftest import KEY, closed_port

K = ErrorKind


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "-4"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "whenever"}, None),
        ({}, None),
    ],
)
def test_retry_after_read_from_headers(headers, expected):
    assert errors.retry_after_seconds(httpx2.Headers(headers)) == expected


def test_retry_after_as_http_date():
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)

    assert 8 <= errors.retry_after_seconds(httpx2.Headers({"Retry-After": in_ten})) <= 10


def test_retry_after_date_in_the_past_is_zero():
    assert errors.retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


def test_503_carries_retry_after_too():
    error = errors.from_status(503, "busy", headers={"retry-after": "7"})

    assert (error.kind, error.retry_after) == (K.OVERLOADED, 7.0)


def test_retry_after_ignored_on_a_400():
    assert errors.from_status(400, "bad", headers={"retry-after": "7"}).retry_after is None


@pytest.mark.parametrize(
    "status, expected",
    [
        (401, K.AUTH),
        (402, K.AUTH),
        (409, K.SERVER),
        (410, K.NOT_FOUND),
        (418, K.SERVER),
        (504, K.SERVER),
        (302, K.SERVER),
        (None, K.SERVER),
    ],
)
def test_other_statuses(status, expected):
    assert errors.from_status(status, "x").kind is expected


def test_context_code_wins_over_the_message():
    error = errors.from_status(400, "Please shorten it.", code="context_length_exceeded")

    assert error.kind is K.CONTEXT_TOO_LONG


@pytest.mark.parametrize(
    "message",
    [
        "prompt is too long: 200123 tokens > 200000 maximum",
        "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576).",
        "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.",
    ],
)
def test_context_length_found_in_the_message_as_a_last_resort(message):
    assert errors.from_status(400, message).kind is K.CONTEXT_TOO_LONG


def test_context_message_on_a_5xx_stays_server():
    assert errors.from_status(500, "prompt is too long").kind is K.SERVER


def test_key_is_scrubbed_from_messages():
    error = errors.from_status(401, f"Incorrect API key provided: {KEY}", secret=KEY)

    assert KEY not in error.message and "***" in error.message


def test_long_messages_are_cut():
    assert len(errors.from_status(500, "x" * 5000).message) == errors.MESSAGE_LIMIT


@pytest.mark.parametrize(
    "exc, expected",
    [
        (TimeoutError(), K.TIMEOUT),
        (TimeoutError(), K.TIMEOUT),
        (aiohttp.ServerTimeoutError("read"), K.TIMEOUT),
        (httpx2.ReadTimeout("read"), K.TIMEOUT),
        (ConnectionRefusedError(111, "refused"), K.CONNECTION),
        (httpx2.ConnectError("refused"), K.CONNECTION),
        (aiohttp.ServerDisconnectedError(), K.CONNECTION),
        (json.JSONDecodeError("Expecting value", "{", 1), K.SERVER),
    ],
)
def test_raw_exceptions(exc, expected):
    assert errors.from_exception(exc).kind is expected


def test_innermost_cause_decides_timeout_or_connection():
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as refused:
            raise httpx2.ConnectTimeout("mislabelled") from refused
    except httpx2.ConnectTimeout as outer:
        error = errors.from_transport(outer, timeout=True)

    assert error.kind is K.CONNECTION


def test_gemini_retry_delay_read_from_the_body():
    body = {
        "error": {"code": 429, "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"}]}
    }

    assert errors._google_retry_delay(body) == 38.0


async def test_anthropic_mid_stream_error_maps_by_type(connect, sim):
    adapter, model = connect("anthropic")
    sim.set_fault(model.model_id, error_event_after_chunks=1)

    with pytest.raises(Exception) as caught:
        stream = await adapter._client.messages.create(
            model=model.model_id, max_tokens=50, messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        async for _ in stream:
            pass
    error = errors.from_anthropic(caught.value)

    assert (error.kind, error.status) == (K.OVERLOADED, 200)


async def test_openai_refused_connection_is_not_a_timeout(connect, simulator):
    adapter, model = connect("openai", base_url=f"http://127.0.0.1:{closed_port()}/v1")

    with pytest.raises(Exception) as caught:
        await adapter._client.chat.completions.create(
            model=model.model_id, messages=[{"role": "user", "content": "Hi"}]
        )

    assert type(caught.value).__name__ == "APITimeoutError"  # what the SDK says
    assert errors.from_openai(caught.value).kind is K.CONNECTION

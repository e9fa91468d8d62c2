"""One small handler per fault. A stream's fault strikes after the ``after`` content chunks
of its exchange (0: before the first content, 1: after it); a plain call's, in its body."""

from __future__ import annotations

import asyncio

from .server import SSE, Exchange

SLOW_SECONDS = 2.0  # well past the faulty provider's timeout (0.5 s) and route deadline (1 s) in the tests
ENDLESS_PIECE = 64 * 1024
ENDLESS_SAFETY_BYTES = 1024 * 1024  # where the server ends the body if no cap stopped the hub
HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
# A frame no SSE parser can read as an event: bytes that are not UTF-8, no field name.
MALFORMED_FRAME = b"\xff\xfe\x00\x9c not an event \xc3\x28\n\n"


async def reset_before_headers(ex: Exchange) -> None:
    ex.reset()


async def reset_after_headers(ex: Exchange) -> None:
    if ex.stream:
        before, _, _ = ex.stream_parts()
        ex.head(content_type=SSE)
        await ex.send(before)
    else:
        body = ex.completion()
        ex.head(length=len(body))
        await ex.send(body[: len(body) // 2])
    await asyncio.sleep(0.05)  # let the hub read what was sent before the reset
    ex.reset()


async def ended_early(ex: Exchange) -> None:
    """A stream whose body ends cleanly (its last chunk) before the format's own end: no
    stop reason, no ``message_stop``, no ``[DONE]``, as a proxy that gives up would."""
    before, _, _ = ex.stream_parts()
    ex.head(content_type=SSE)
    await ex.send(before)


async def slow_first_byte(ex: Exchange) -> None:
    await asyncio.sleep(SLOW_SECONDS)
    await ex.answer()


async def slow_drip(ex: Exchange) -> None:
    """The first bytes at once, then a pause longer than the idle timeout per piece."""
    if ex.stream:
        before, content, tail = ex.stream_parts()
        ex.head(content_type=SSE)
        pieces = [before, *content, tail]
    else:
        body = ex.completion()
        ex.head(length=len(body))
        pieces = [body[:1], body[1:]]
    for piece in pieces:
        await ex.send(piece)
        await asyncio.sleep(SLOW_SECONDS)


def status(code: int, *, retry_after: int | None = None):
    """An error status with the wire format's own error body."""
    extra = [(b"retry-after", str(retry_after).encode())] if retry_after is not None else []

    async def handler(ex: Exchange) -> None:
        await ex.respond(code, ex.wire.error(code), extra=extra)

    handler.__name__ = f"status_{code}"
    return handler


async def truncated_json(ex: Exchange) -> None:
    """A plain body cut in the middle of its JSON (its length says so: nothing is
    missing on the wire); a stream event whose JSON stops short."""
    if not ex.stream:
        body = ex.completion()
        return await ex.respond(200, body[: len(body) // 2])
    await _stream_with(ex, ex.wire.garbage_event)


async def malformed_frame(ex: Exchange) -> None:
    await _stream_with(ex, MALFORMED_FRAME)


async def html_body(ex: Exchange) -> None:
    """A 200 from something that is not the API (a captive portal, a misrouted proxy)."""
    await ex.respond(200, HTML, content_type=b"text/html; charset=utf-8")


async def error_event(ex: Exchange) -> None:
    """The wire format's error event inside a 200 stream; for a plain call, a 200 whose
    body is the wire format's error object instead of an answer."""
    if not ex.stream:
        return await ex.respond(200, ex.wire.error(500))
    before, _, _ = ex.stream_parts()
    ex.head(content_type=SSE)
    await ex.send(before + ex.wire.stream_error_event)


async def endless_body(ex: Exchange) -> None:
    """A body that never ends: JSON whitespace for a plain call; before the first content,
    events that carry none; after it, content without end."""
    if ex.stream:
        before, content, _ = ex.stream_parts()
        ex.head(content_type=SSE)
        await ex.send(before)
        await asyncio.sleep(0.05)  # the first content, if any, reaches the client first
        piece = content[0] if ex.after else _contentless_event(ex)
    else:
        ex.head()  # no length: the body runs until the connection closes
        await ex.send(b'{"id": "endless", ')
        piece = b" "
    piece *= max(1, ENDLESS_PIECE // len(piece))
    for _ in range(ENDLESS_SAFETY_BYTES // len(piece)):
        await ex.send(piece)


async def stall(ex: Exchange) -> None:
    """Say nothing more (after the stream's first ``after`` chunks) until the hub leaves."""
    if ex.stream:
        before, _, _ = ex.stream_parts()
        ex.head(content_type=SSE)
        await ex.send(before)
    await ex.wait_gone()


async def _stream_with(ex: Exchange, bad: bytes) -> None:
    before, content, tail = ex.stream_parts()
    ex.head(content_type=SSE)
    await ex.send(before + bad + b"".join(content) + tail)


def _contentless_event(ex: Exchange) -> bytes:
    """An event of the format that carries no text: Anthropic's ping, an OpenAI chunk with
    no choices, a Gemini chunk with no candidates."""
    kind = ex.call.kind
    if kind == "anthropic":
        return b'event: ping\ndata: {"type": "ping"}\n\n'
    if kind == "openai":
        return b'data: {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []}\n\n'
    return b'data: {"modelVersion": "m", "responseId": "x"}\r\n\r\n'

"""Relaying an OpenAI-wire stream to an OpenAI-format client as the upstream's own bytes.

Parsing every chunk through the SDK's SSE decoder and writing it out again costs most of
the CPU a relayed stream takes. Where the wire formats match (an OpenAI or OpenAI-compatible
upstream, the hub's ``/v1/chat/completions``), ``SseRelay`` reads the SDK's raw response
and hands on the upstream's bytes instead:

- each event is still checked (``orjson``, a few µs): an error event, a chunk that is not
  JSON, a finish reason, usage or tool calls are handed to the adapter's parser as a chunk
  (a dict), exactly as the SDK's stream would have given it;
- a run of plain content events goes on as one ``StreamEvent`` whose ``raw`` holds their
  bytes, with the upstream's ``id`` (and ``model``, when the upstream names the model
  otherwise) rewritten to the hub's, and whose ``text`` holds their content (for the
  ledger's count of a cut stream and the start of the answer);
- content-less events (the role's opening event, empty deltas) wait for the next content
  and go out with it; before a parsed chunk they are dropped (the endpoint writes its own).

Events are relayed only whole (up to the last blank line read), so a rewrite never meets
half an id. An upstream whose first chunk does not carry its id and model in the compact
form (``"id":"..."``) gets no rewrite and no relay: every chunk is parsed, as before."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable

import orjson

from .base import StreamEvent

_EVENT_END = b"\n\n"
_DATA = b"data: {"
_PLAIN_DELTA = frozenset({"role", "content"})  # a delta with nothing else (set) is relayed
DRAIN_SECONDS = 0.1  # the SDK's own wait for the rest of a body after [DONE]


class SseRelay:
    """An async iterator over an SDK raw streamed response (httpx2): parsed chunks (dict)
    and relay events (``StreamEvent`` with ``raw``). ``aclose()`` closes the response."""

    def __init__(self, response, *, model_id: str, relay_id: str, stream_error: Callable[..., Exception]):
        self._response, self._model_id, self._relay_id = response, model_id, relay_id
        self._stream_error = stream_error  # the SDK's APIError, raised for an error event as the SDK does
        self._reads = response.aiter_bytes()
        self._buffer = bytearray()  # the start of an event not yet whole
        self._cr = False  # a read ended with CR: its LF may start the next one
        self._ready: deque = deque()  # chunks, relay events, or an exception to raise
        self._rewrite: list[tuple[bytes, bytes]] | None = None  # None: not decided yet
        self._relaying = True
        self._held: list[bytes] = []  # relayable events waiting to go out
        self._held_text: list[str] = []
        self._held_count = 0  # of them, events with content
        self._done = False  # [DONE] read (or a failure queued): nothing more is read as events
        self._ended = False  # the body read to its end, or drained

    def __aiter__(self) -> SseRelay:
        return self

    async def __anext__(self):
        ready = self._ready
        while not ready:
            if self._ended:
                raise StopAsyncIteration
            if self._done:
                await self._drain()
                continue
            await self._read()
        item = ready.popleft()
        if isinstance(item, BaseException):
            raise item
        return item

    async def aclose(self) -> None:
        await self._response.aclose()

    async def _drain(self) -> None:
        """After ``[DONE]``, what is left of the body is read for at most ``DRAIN_SECONDS`` and
        dropped, whatever happens to it (so that the connection may serve again), as the SDK
        does: a reset or a silence after the end does not make a finished answer a failure."""
        self._ended = True
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                async for _ in self._reads:
                    pass
        except Exception:  # noqa: BLE001 - the answer is complete; the connection is closed instead
            pass

    async def _read(self) -> None:
        try:
            data = await self._reads.__anext__()
        except StopAsyncIteration:
            # An event without its blank line at the end of the body is dropped, as the SDK's
            # decoder drops it: a stream cut there lacks its finish and fails as cut short.
            self._ended = True
            self._flush()
            return
        if self._cr:  # CRLF pairs are never split between two reads
            data, self._cr = b"\r" + data, False
        if b"\r" in data:  # CRLF (or CR) line ends, made LF
            if data.endswith(b"\r"):
                data, self._cr = data[:-1], True
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer
        seen = max(0, len(buffer) - 1)  # the buffer held no blank line: one can only end in the new bytes
        buffer += data
        cut = buffer.rfind(_EVENT_END, seen)
        if cut < 0:
            return
        whole = bytes(buffer[: cut + 2])
        del buffer[: cut + 2]
        self._events(whole)
        self._flush()

    def _events(self, whole: bytes) -> None:
        """Whole events (each ending with a blank line) sorted into relayed and parsed."""
        for event in whole.split(_EVENT_END):
            if not event:
                continue
            try:
                payload = event[6:] if event.startswith(_DATA) and b"\n" not in event else _data_of(event)
                if payload is None:  # a comment or an event without data: nothing for the client
                    continue
                if payload.startswith(b"[DONE]"):
                    self._done = True
                    return
                chunk = _json(payload)
            except ValueError as exc:  # not UTF-8, not JSON: the SDK's own failure, after what came before
                self._fail(exc)
                return
            if type(chunk) is dict and chunk.get("error"):
                error = chunk["error"]
                message = error.get("message") if isinstance(error, dict) else None
                self._fail(
                    self._stream_error(
                        message if isinstance(message, str) and message else "An error occurred during streaming",
                        request=self._response.request,
                        body=error,
                    )
                )
                return
            content = _plain_content(chunk) if self._relaying else None
            if content is not None:
                if self._rewrite is None:
                    self._rewrite = self._rewrite_for(chunk, event)
                    self._relaying = self._rewrite is not None
                elif not all(upstream in event for upstream, _ in self._rewrite):
                    content = None  # another id or layout than the first event's: parsed
            if content is None or not self._relaying:
                self._flush(drop_empty=True)
                self._ready.append(chunk)
                continue
            self._held.append(event)
            if content:
                self._held_text.append(content)
                self._held_count += 1

    def _fail(self, exc: Exception) -> None:
        """The stream fails here: what came before goes out first, then ``exc`` is raised."""
        self._flush()
        self._ready.append(exc)
        self._done = True

    def _flush(self, *, drop_empty: bool = False) -> None:
        """The held events, as one relay event, if any of them has content."""
        if self._held_count:
            raw = _EVENT_END.join(self._held) + _EVENT_END
            for upstream, ours in self._rewrite or ():
                raw = raw.replace(upstream, ours)
            text = self._held_text[0] if self._held_count == 1 else "".join(self._held_text)
            self._ready.append(StreamEvent(text, raw=raw, count=self._held_count))
        elif not drop_empty:
            return
        self._held, self._held_text, self._held_count = [], [], 0

    def _rewrite_for(self, chunk: dict, event: bytes) -> list[tuple[bytes, bytes]] | None:
        """The byte replacements that make the upstream's chunks the hub's, or None when its
        chunks do not carry id and model in the compact form they are looked for in."""
        upstream_id, upstream_model = chunk.get("id"), chunk.get("model")
        if type(upstream_id) is not str or type(upstream_model) is not str:
            return None
        pairs = [(b'"id":' + orjson.dumps(upstream_id), b'"id":' + orjson.dumps(self._relay_id))]
        if upstream_model != self._model_id:
            pairs.append((b'"model":' + orjson.dumps(upstream_model), b'"model":' + orjson.dumps(self._model_id)))
        if not all(upstream in event for upstream, _ in pairs):
            return None
        return pairs


def _plain_content(chunk) -> str | None:
    """A chunk's text ("" for none) when it is a plain content delta the client may get as
    it is; None when the hub must read it (finish, usage, tool calls, anything unusual)."""
    if type(chunk) is not dict or chunk.get("usage"):
        return None
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1:
        return None
    choice = choices[0]
    if type(choice) is not dict or choice.get("finish_reason") is not None or choice.get("index", 0) != 0:
        return None
    delta = choice.get("delta")
    if type(delta) is not dict or any(value for name, value in delta.items() if name not in _PLAIN_DELTA):
        return None  # tool calls, reasoning, a refusal: the parser decides what the client gets
    content = delta.get("content")
    if content is None:
        return ""
    return content if type(content) is str else None


def _json(payload: bytes):
    """As the SDK reads an event (``json.loads``): orjson, and where orjson is stricter (NaN,
    numbers past a double, lone surrogates) the standard library."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return json.loads(payload.decode())


def _data_of(event: bytes) -> bytes | None:
    """The data of an event in any other layout (several data lines, an event name, no
    space after the colon), as the SSE specification joins it; None when it has none.
    Bytes that are not UTF-8 raise UnicodeDecodeError, as in the SDK's decoder."""
    event.decode()
    lines = [line[5:] for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[1:] if line.startswith(b" ") else line for line in lines)

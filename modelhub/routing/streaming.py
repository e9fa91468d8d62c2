"""Failover for streamed answers. Until the first content of an answer has arrived nothing
has been sent to the client, so any failure (error status, no first token in time,
connection error, an error event before content) moves on to the next model unseen: the
attempt that ``Failover.run`` makes is "open the stream and wait for its first content".
Once content flows, a failure ends the stream: ``RouteStream.error`` says why.

A stream that ends without the provider's finish reason was cut short (a proxy closed it
cleanly, or the body was no stream at all): a failure like any other, never a complete
answer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from decimal import Decimal

from ..providers.base import ChatRequest, ErrorKind, ModelSpec, ProviderError, StreamEvent, ToolCall, ToolCallDelta
from ..runtime import runtime
from .router import Attempt, Failover, RoutingError, Success, adapter_error, cost_of

Opened = tuple[AsyncIterator[StreamEvent], StreamEvent]
# a text delta, tool-call deltas, or (only when relaying) the upstream's bytes of content events
Piece = str | tuple[ToolCallDelta, ...] | bytes


class RouteStream:
    """An answer whose first content has arrived. Iterate ``deltas()`` for its text and
    tool-call deltas; then ``end`` holds the provider's last event, or ``error`` the
    failure that cut it, and ``tool_calls`` the whole calls. Its
    attempt is listed in ``attempts`` from the start and recorded, once, when the stream
    ends: read to its end, cut, or closed (``aclose``) however far it was read; that is
    also the end of its request (``Failover.concluded``)."""

    def __init__(self, failover: Failover, success: Success[Opened], request: ChatRequest):
        self.failover, self.success, self._request = failover, success, request
        self._events, self._first = success.value
        self.attempt: Attempt = failover.opened(success)
        self.ttft_ms = self.attempt.latency_ms
        self.end: StreamEvent | None = self._first if self._first.last else None
        self.error: ProviderError | None = None
        self.tokens = (0, 0)
        self.cost = Decimal(0)
        self.recorded = False
        # what the provider has sent so far: the first content counts before it is relayed
        self._streamed, self._pieces = (0, 0) if self.end else (len(self._first.text), self._first.count)
        self._calls: dict[int, list[str]] = {}  # tool-call index -> [id, name, arguments]
        if self._first.tool_calls:
            self._tool_deltas(self._first)

    @property
    def model(self) -> ModelSpec:
        return self.success.model

    @property
    def route(self):
        return self.failover.route

    @property
    def attempts(self) -> list[Attempt]:
        return self.failover.attempts

    @property
    def source(self) -> str:
        return self.success.source

    @property
    def finish_reason(self) -> str | None:
        return self.end.finish_reason if self.end else None

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls streamed so far, whole."""
        return tuple(ToolCall(*self._calls[i]) for i in sorted(self._calls))

    async def deltas(self) -> AsyncGenerator[Piece, None]:
        """The answer's text deltas (str) and tool-call deltas (a tuple). Never raises a
        provider failure (see ``error``); closed early (client gone), it cancels the
        upstream call and records the attempt."""
        finished = False
        try:
            if self.end is None:
                first = self._first
                if first.raw:
                    yield first.raw
                else:
                    if first.tool_calls and first.text:  # Gemini: text and a call in one chunk
                        yield first.text
                    yield first.tool_calls or first.text
                async for event in self._events:
                    if event.raw:  # relayed content events (Adapter.relay)
                        self._streamed += len(event.text)
                        self._pieces += event.count
                        yield event.raw
                        continue
                    if event.last:
                        self.end = stream_finished(event)
                        break
                    if event.tool_calls:
                        if event.text:
                            self._streamed += len(event.text)
                            yield event.text
                        yield self._tool_deltas(event)
                        continue
                    self._streamed += len(event.text)
                    self._pieces += 1
                    yield event.text
            finished = True
        except ProviderError as error:
            self.error, finished = error, True
        except Exception as exc:  # noqa: BLE001 - an adapter bug ends the stream like a failure
            self.error, finished = adapter_error(self.model, exc), True
        finally:
            if not finished:
                await stream_close(self._events)
            self._record(finished)

    def _tool_deltas(self, event: StreamEvent) -> tuple[ToolCallDelta, ...]:
        """Count the deltas as streamed output and add them to the whole calls."""
        for delta in event.tool_calls:
            call = self._calls.setdefault(delta.index, ["", "", ""])
            call[0] = delta.id or call[0]
            call[1] = delta.name or call[1]
            call[2] += delta.arguments
            self._streamed += len(delta.arguments) + len(delta.name or "")
        self._pieces += 1
        return event.tool_calls

    async def aclose(self) -> None:
        """End the stream where it stands, also when ``deltas`` never started (its client
        left before the first byte was sent) or was left suspended: the upstream call is
        cancelled and the attempt recorded as abandoned, unless it was recorded already."""
        if not self.recorded:
            await stream_close(self._events)
            self._record(finished=False)

    def _record(self, finished: bool) -> None:
        if self.recorded:
            return
        self.recorded = True
        end, failover, started = self.end, self.failover, self.success.started
        if end is not None and end.input_tokens is not None:
            self.tokens = (end.input_tokens, end.output_tokens or 0)
        else:  # cut, or a provider that reports no usage in streams: count what was streamed
            self.tokens = (request_tokens(self._request), max(self._pieces, -(-self._streamed // 4)))
        if self.error is not None:
            with contextlib.suppress(RoutingError):  # too late to fail over, whatever the kind
                failover.failed(
                    self.model,
                    self.success.position,
                    self.error,
                    started,
                    tokens=self.tokens,
                    ttft_ms=self.ttft_ms,
                    attempt=self.attempt,
                )
            failover.concluded(self.error.kind.value)
            self.cost = cost_of(self.model, *self.tokens)
        elif not finished:
            self.cost = failover.abandoned(self.attempt, started, tokens=self.tokens, ttft_ms=self.ttft_ms)
        else:
            self.cost = failover.answered(self.success, self.tokens, attempt=self.attempt, ttft_ms=self.ttft_ms)


def request_tokens(request: ChatRequest) -> int:
    """A count for a request whose usage the provider never reported: ~4 characters a token."""
    chars = sum(len(m.content) for m in request.messages) + len(request.system or "")
    return max(1, -(-chars // 4))


async def stream_open(
    failover: Failover,
    request: ChatRequest,
    request_for: Callable[[ModelSpec], ChatRequest] | None = None,
    *,
    relay_id: str | None = None,
) -> RouteStream:
    """Open a stream on the first model of the route that produces content; raises a
    RoutingError (nothing sent yet) when none does. ``request_for(model)``, when given, is
    the request as that model gets it (a conversation's history fitted to its window).
    With ``relay_id`` (an OpenAI-format client), a model on the OpenAI wire relays its
    content as the upstream's bytes (``Adapter.relay``): ``deltas`` then yields bytes too."""

    async def first_content(model: ModelSpec) -> Opened:
        sent = request if request_for is None else request_for(model)
        adapter = runtime().adapters.get(model.provider)
        events = adapter.stream(model, sent) if relay_id is None else adapter.relay(model, sent, relay_id)
        try:
            return events, await _first_content(events)
        except BaseException:
            await stream_close(events)
            raise

    success = await failover.run(first_content)
    return RouteStream(failover, success, request if request_for is None else request_for(success.model))


async def _first_content(events: AsyncIterator[StreamEvent]) -> StreamEvent:
    async for event in events:
        if event.text or event.tool_calls:
            return event
        if event.last:
            return stream_finished(event)
    raise ProviderError(ErrorKind.SERVER, "stream ended without an answer")


def stream_finished(end: StreamEvent) -> StreamEvent:
    """The stream's last event, if the provider finished the answer; a stream that ended
    without its finish reason was cut short."""
    if end.finish_reason is None:
        raise ProviderError(ErrorKind.SERVER, "the stream ended before the provider finished the answer")
    return end


async def stream_close(events) -> None:
    try:
        await events.aclose()
    except Exception:  # noqa: BLE001 - closing a broken stream may fail again; it is gone
        pass

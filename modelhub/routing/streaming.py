"""Failover for streamed answers. Until the first content of an answer has arrived nothing
has been sent to the client, so any failure (error status, no first token in time,
connection error, an error event before content) moves on to the next model unseen.
Once content flows, a failure ends the stream: the caller turns ``RouteStream.error`` into
an explicit error event."""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from decimal import Decimal

from ..providers.base import (
    ChatRequest,
    ErrorKind,
    ModelSpec,
    ProviderError,
    StreamEvent,
)
from ..runtime import runtime
from .router import Failover, RoutingError, adapter_bug, cost_of, route_lookup
from .snapshot import KeySpec, Snapshot


class RouteStream:
    """An answer whose first content has arrived. Iterate ``deltas()`` for its text; then
    ``end`` holds the provider's last event, or ``error`` the failure that cut it."""

    def __init__(self, failover: Failover, model: ModelSpec, position: int, events: AsyncIterator,
                 first: StreamEvent, started: float, request: ChatRequest):
        self.failover, self.model, self.position = failover, model, position
        self._events, self._first, self._started, self._request = events, first, started, request
        self.ttft_ms = int((time.perf_counter() - started) * 1000)
        self.end: StreamEvent | None = first if first.last else None
        self.error: ProviderError | None = None
        self.tokens = (0, 0)
        self.cost = Decimal(0)

    @property
    def route(self):
        return self.failover.route

    @property
    def attempts(self):
        return self.failover.attempts

    @property
    def source(self) -> str:
        return "primary" if self.position == 0 else f"fallback_{self.position}"

    @property
    def finish_reason(self) -> str | None:
        return self.end.finish_reason if self.end else None

    async def deltas(self) -> AsyncIterator[str]:
        """The answer's text deltas. Never raises a provider failure (see ``error``);
        closed early (client gone), it cancels the upstream call and records the attempt."""
        streamed, pieces, finished = 0, 0, False
        try:
            if self.end is None:
                streamed, pieces = len(self._first.text), 1
                yield self._first.text
                async for event in self._events:
                    if event.last:
                        self.end = event
                        break
                    streamed += len(event.text)
                    pieces += 1
                    yield event.text
            finished = True
        except ProviderError as error:
            self.error, finished = error, True
        except Exception as exc:  # noqa: BLE001 - an adapter bug ends the stream like a failure
            self.error, finished = adapter_bug(self.model, exc), True
        finally:
            if not finished:
                await _close(self._events)
            self._record(streamed, pieces, finished)

    def _record(self, streamed: int, pieces: int, finished: bool) -> None:
        end, failover = self.end, self.failover
        if end is not None and end.input_tokens is not None:
            self.tokens = (end.input_tokens, end.output_tokens or 0)
        else:  # cut, or a provider that reports no usage in streams: count what was streamed
            self.tokens = (request_tokens(self._request), max(pieces, -(-streamed // 4)))
        args = (self.model, self.position, self._started)
        if self.error is not None:
            with contextlib.suppress(RoutingError):  # too late to fail over, whatever the kind
                failover.failed(self.model, self.position, self.error, self._started,
                                tokens=self.tokens, ttft_ms=self.ttft_ms)
        elif not finished:
            failover.abandoned(*args, tokens=self.tokens, ttft_ms=self.ttft_ms)
        else:
            self.cost = failover.answered(*args, self.tokens, ttft_ms=self.ttft_ms)[1]
            return
        self.cost = cost_of(self.model, *self.tokens)


def request_tokens(request: ChatRequest) -> int:
    """A count for a request whose usage the provider never reported: ~4 characters a token."""
    chars = sum(len(m.content) for m in request.messages) + len(request.system or "")
    return max(1, -(-chars // 4))


async def route_stream(*, snapshot: Snapshot, route_name: str, request: ChatRequest,
                       key: KeySpec | None, request_id: str) -> RouteStream:
    """Open a stream on the first model of the route that produces content; raises a
    RoutingError (nothing sent yet) when none does."""
    failover = Failover(route_lookup(snapshot, route_name), key=key, request_id=request_id, stream=True)
    for position, model in failover.candidates():
        seconds, by_deadline = failover.deadline.attempt_timeout()
        started = time.perf_counter()
        events = None
        try:
            events = runtime().adapters.get(model.provider).stream(model, request)
            async with asyncio.timeout(seconds):
                first = await _first_content(events)
        except ProviderError as error:
            failover.failed(model, position, error, started)
            continue
        except TimeoutError:
            await _close(events)
            failover.timed_out(model, position, started, seconds, by_deadline)
            continue
        except Exception as exc:  # noqa: BLE001 - an adapter bug must fail over, not 500
            await _close(events)
            failover.failed(model, position, adapter_bug(model, exc), started)
            continue
        except asyncio.CancelledError:
            await _close(events)
            failover.abandoned(model, position, started)
            raise
        return RouteStream(failover, model, position, events, first, started, request)
    raise failover.exhausted()


async def _first_content(events: AsyncIterator[StreamEvent]) -> StreamEvent:
    async for event in events:
        if event.text or event.last:
            return event
    raise ProviderError(ErrorKind.SERVER, "stream ended without an answer")


async def _close(events) -> None:
    if events is None:
        return
    try:
        await events.aclose()
    except Exception:  # noqa: BLE001 - closing a broken stream may fail again; it is gone
        pass

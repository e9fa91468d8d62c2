"""The chat service: one request's lifecycle after its body has been parsed.

    admit   the key may use the route, is within its rate and its day's budget
    route   failover along the route's chain (routing.router: the one loop)
    settle  the answer's cost counts against the key's budget; a stream settles when it
            ends, however it ends (finished, cut by a failure, or abandoned by its client)
    record  every attempt leaves a ledger row (written by the router as it goes)

Endpoints (the DRF views, and later the websocket and the playground) parse, call
``chat_complete`` or ``chat_stream``, and format what comes back; nothing else. DRF views
run the admission steps through their permission and throttle classes, which call
``chat_route_permit`` and ``chat_rate_check`` here; other callers use ``chat_admit``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

from .limits import limits_check, route_permit, spend_add, spend_add_soon
from .providers.base import ChatRequest, ChatResult, ModelSpec
from .routing.router import Attempt, Failover, route_lookup
from .routing.snapshot import KeySpec, RouteSpec, Snapshot
from .routing.streaming import RouteStream, stream_open
from .runtime import runtime


@dataclass(frozen=True, slots=True)
class ChatCall:
    """A parsed request: who asks, for which route (or model id), what."""

    snapshot: Snapshot
    key: KeySpec
    route: str
    request: ChatRequest
    request_id: str
    started: float


@dataclass(slots=True)
class ChatAnswer:
    result: ChatResult
    model: ModelSpec
    route: RouteSpec
    source: str
    cost: Decimal
    attempts: list[Attempt]
    latency_ms: int


def chat_route_permit(*, key: KeySpec, route: str) -> None:
    """Raises LimitExceeded (403) when the key may not use ``route``."""
    route_permit(key=key, route=route)


async def chat_rate_check(*, key: KeySpec) -> None:
    """Counts the request against the key's minute; raises LimitExceeded (429) past its
    rate or its day's budget. Free for a key without limits."""
    if key.rpm_limit is not None or key.daily_budget_usd is not None:
        await limits_check(key=key)


async def chat_admit(*, key: KeySpec, route: str) -> None:
    chat_route_permit(key=key, route=route)
    await chat_rate_check(key=key)


async def chat_complete(call: ChatCall) -> ChatAnswer:
    """Answer from the first model of the route that can; raises RoutingError otherwise."""
    failover = Failover(route_lookup(call.snapshot, call.route), key=call.key, request_id=call.request_id)
    request = call.request
    success = await failover.run(lambda model: runtime().adapters.get(model.provider).chat(model, request))
    result = success.value
    cost = failover.answered(success, (result.input_tokens, result.output_tokens))
    await spend_add(key=call.key, cost=cost)
    return ChatAnswer(
        result, success.model, failover.route, success.source, cost, failover.attempts, _ms_since(call.started)
    )


async def chat_stream(call: ChatCall) -> ChatStream:
    """Open the answer's stream on the first model that produces content; raises
    RoutingError (nothing sent yet) when none does."""
    failover = Failover(route_lookup(call.snapshot, call.route), key=call.key, request_id=call.request_id, stream=True)
    return ChatStream(await stream_open(failover, call.request), call)


class ChatStream:
    """A streamed answer. Iterate ``deltas()``; then ``stream`` describes the whole answer
    (``stream.error`` set when a failure cut it) and its cost is settled."""

    def __init__(self, stream: RouteStream, call: ChatCall):
        self.stream, self.call = stream, call

    async def deltas(self) -> AsyncIterator[str]:
        stream, key = self.stream, self.call.key
        deltas = stream.deltas()
        try:
            async for text in deltas:
                yield text
        except BaseException:  # the client went away: cancel upstream, record, settle
            await deltas.aclose()
            spend_add_soon(key=key, cost=stream.cost)
            raise
        await spend_add(key=key, cost=stream.cost)

    @property
    def latency_ms(self) -> int:
        return _ms_since(self.call.started)


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)

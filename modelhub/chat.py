"""The chat service: one request's lifecycle after its body has been parsed.

    admit   the key may use the route, is within its rate and its day's budget
    reserve the request's worst case (``worst_cost``: every input the providers bill, on the
            dearest model of the chain) is held in the key's budget, capped by what is
            left; a request cancelled meanwhile (its client gone) releases it
    route   failover along the route's chain (routing.router: the one loop)
    settle  the reservation becomes the answer's real cost; a stream settles when it
            ends, however it ends (finished, cut by a failure, or abandoned by its client)
    record  every attempt leaves a ledger row (written by the router as it goes)
    rollout on a route with an active rollout, the request's canary outcome is counted,
            or an answered request copied to the candidate (``modelhub.rollouts``), off
            the request: a route without one pays one attribute check

Endpoints (the DRF views, and later the websocket and the playground) parse, call
``chat_complete`` or ``chat_stream``, and format what comes back; nothing else. DRF views
run the admission steps through their permission and throttle classes, which call
``chat_route_permit`` and ``chat_rate_check`` here; other callers use ``chat_admit``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from decimal import Decimal

import orjson

from .conversations import history_fit
from .limits import Reservation, budget_reserve, budget_settle, budget_settle_soon, limits_check, route_permit
from .providers.base import ChatRequest, ChatResult, Message, ModelSpec, Tool, max_tokens_for
from .rollouts import rollout_request_done
from .routing.capabilities import needs_of
from .routing.explain import routing_explained
from .routing.router import Attempt, Failover, RouteUnavailable, cost_of, route_lookup
from .routing.snapshot import KeySpec, RouteSpec, Snapshot
from .routing.strategies import Choice, route_choose
from .routing.streaming import Piece, RouteStream, stream_open
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
    conversation_id: str | None = None
    history: tuple[Message, ...] = ()  # the conversation's earlier turns, oldest first

    @property
    def sticky(self) -> str:
        """What keeps a caller on one canary arm: its conversation, else this request."""
        return self.conversation_id or self.request_id

    def request_for(self, model: ModelSpec) -> ChatRequest:
        """The request as ``model`` gets it: with as much of the history as fits its window."""
        return history_fit(self.history, self.request, model) if self.history else self.request


@dataclass(slots=True)
class ChatAnswer:
    result: ChatResult
    model: ModelSpec
    route: RouteSpec
    source: str
    cost: Decimal
    attempts: list[Attempt]
    latency_ms: int
    failover: Failover

    def routing(self, *, attempts: bool = False) -> dict:
        """The routing explanation of this answer."""
        return routing_explained(self.failover, attempts=attempts)


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
    failover = _failover(call, stream=False)
    reservation = await _reserve(call.key, failover.route, _whole(call))
    adapters, request_for = runtime().adapters, call.request_for
    try:
        success = await failover.run(lambda model: adapters.get(model.provider).chat(model, request_for(model)))
    except BaseException:
        budget_settle_soon(reservation=reservation, cost=Decimal(0))
        _rollout_done(failover, call, answered=False)
        raise
    result = success.value
    cost = failover.answered(success, (result.input_tokens, result.output_tokens))
    await budget_settle(reservation=reservation, cost=cost)
    _rollout_done(failover, call, answered=True)
    return ChatAnswer(
        result,
        success.model,
        failover.route,
        success.source,
        cost,
        failover.attempts,
        _ms_since(call.started),
        failover,
    )


async def chat_stream(call: ChatCall, *, relay_id: str | None = None) -> ChatStream:
    """Open the answer's stream on the first model that produces content; raises
    RoutingError (nothing sent yet) when none does. ``relay_id``: the client speaks OpenAI's
    format, and an OpenAI-wire model's content may reach it as the upstream's own bytes,
    with this id (``deltas`` then yields bytes too)."""
    failover = _failover(call, stream=True)
    reservation = await _reserve(call.key, failover.route, _whole(call))
    try:
        stream = await stream_open(
            failover, call.request, call.request_for if call.history else None, relay_id=relay_id
        )
    except BaseException:
        budget_settle_soon(reservation=reservation, cost=Decimal(0))
        _rollout_done(failover, call, answered=False)
        raise
    return ChatStream(stream, call, reservation)


def _rollout_done(failover: Failover, call: ChatCall, *, answered: bool) -> None:
    """The request is over: its rollout (if its route has one) hears how it went."""
    if failover.route.rollout is not None:
        rollout_request_done(failover, call.request_for, answered=answered)


def chat_choice(call: ChatCall, *, stream: bool) -> tuple[RouteSpec, Choice]:
    """The route the request names and the chain its strategy chooses; RouteUnavailable
    when that chain is empty (a complexity route whose routes have no enabled model)."""
    route = route_lookup(call.snapshot, call.route)
    choice = route_choose(call.snapshot, route, call.request, stream=stream, sticky=call.sticky)
    if not choice.route.full_chain:
        raise RouteUnavailable(f"Route '{route.name}': neither its tier's route nor its chain has an enabled model.")
    return route, choice


def _failover(call: ChatCall, *, stream: bool) -> Failover:
    """The request's walk: the chain its route's strategy chooses, what the request needs
    of a model, and the route its ledger rows go under (none for a bare model id: the
    model is named in the row already)."""
    route, choice = chat_choice(call, stream=stream)
    return Failover(
        choice.route,
        key=call.key,
        request_id=call.request_id,
        stream=stream,
        needs=needs_of(call.request),
        choice=choice,
        ledger_route=route.name if route.name in call.snapshot.routes else "",
    )


def _whole(call: ChatCall) -> ChatRequest:
    """The request with its whole history: what the budget's worst case is taken over."""
    return replace(call.request, messages=call.history + call.request.messages) if call.history else call.request


async def _reserve(key: KeySpec, route: RouteSpec, request: ChatRequest) -> Reservation | None:
    if key.daily_budget_usd is None:  # nothing to hold, nothing to estimate
        return None
    return await budget_reserve(key=key, worst=worst_cost(route, request))


# Tokens around each turn in the chat formats the providers bill (OpenAI: 3-4 a message,
# and 3 that start the answer); counted for the system text and the answer's start too.
TURN_TOKENS = 8
# What a provider adds to the input when tools are offered (Anthropic's tool-use system
# prompt: 281 to 530 tokens, by model and tool_choice).
TOOLS_TOKENS = 600
# The most a provider bills for one image, by provider kind: what its largest image costs
# on the model that counts images the dearest (each at that model's own input price).
#   openai     gpt-4o-mini at high detail: 2,833 + 8 tiles x 5,667 (gpt-4o counts 1,445 for
#              the same image, gpt-4.1-nano 3,779, at its cap of 1,536 patches)
#   anthropic  Claude Opus 4.7's high-resolution images, 3.75 megapixels at 750 pixels a
#              token (earlier models scale an image down to ~1,600 tokens)
#   google     Gemini 2.x: 258 a 768-px tile, 16 tiles for an image scaled to 3,072 px
#              (4,128); Gemini 3 at high media resolution 1,120
# Any other kind (an OpenAI-compatible server, whatever model it runs) counts the largest.
IMAGE_TOKENS_WORST = {"openai": 48_169, "anthropic": 5_000, "google": 5_000}
IMAGE_TOKENS_WORST_ANY = max(IMAGE_TOKENS_WORST.values())


def worst_cost(route: RouteSpec, request: ChatRequest) -> Decimal:
    """The most the request can cost on whichever model of the chain answers: all of its
    input as the providers bill it (``billed_chars``: every character a token, since no
    tokenizer counts fewer; each image as the largest its model's provider bills) and all
    of its output allowance."""
    chars, images = billed_chars(request), request.images
    return max(
        cost_of(
            model,
            chars + images * IMAGE_TOKENS_WORST.get(model.provider.kind, IMAGE_TOKENS_WORST_ANY),
            max_tokens_for(model, request),
        )
        for model in route.full_chain
    )


def billed_chars(request: ChatRequest) -> int:
    """The tokens of the request's input besides its images, one a character: the system
    text and the messages, the tool calls in assistant turns (ids, names, arguments), the
    tool results, the tools offered and the response format's schema (as JSON), with the
    chat format's tokens around each turn (TURN_TOKENS) and around the tools (TOOLS_TOKENS)."""
    chars = len(request.system or "") + TURN_TOKENS * (len(request.messages) + 2)
    for message in request.messages:
        chars += len(message.content) + len(message.tool_call_id or "") + len(message.name or "")
        chars += sum(len(call.id) + len(call.name) + len(call.arguments) + TURN_TOKENS for call in message.tool_calls)
    if request.tools:
        chars += TOOLS_TOKENS + sum(len(orjson.dumps(_tool_json(tool))) for tool in request.tools)
    format_ = request.response_format
    if format_ is not None:
        chars += TURN_TOKENS + len(format_.name) + len(orjson.dumps(format_.schema))
    return chars


def _tool_json(tool: Tool) -> dict:
    return {"name": tool.name, "description": tool.description, "parameters": tool.parameters, "strict": tool.strict}


class ChatStream:
    """A streamed answer. Iterate ``deltas()``; then ``stream`` describes the whole answer
    (``stream.error`` set when a failure cut it) and its cost is settled. A stream that is
    not read to its end is ended by ``aclose()``, which its endpoint must call when its
    response is over (``closed`` says whether anything is left to do)."""

    def __init__(self, stream: RouteStream, call: ChatCall, reservation: Reservation | None):
        self.stream, self.call, self._reservation = stream, call, reservation
        self.closed = False

    async def deltas(self) -> AsyncIterator[Piece]:
        """Text deltas (str) and tool-call deltas (a tuple of ToolCallDelta); relayed
        upstream bytes too, for a stream opened with ``relay_id``."""
        deltas = self.stream.deltas()
        try:
            async for piece in deltas:
                yield piece
        except BaseException:  # the client went away: cancel upstream, record, settle
            await deltas.aclose()
            await self.aclose()
            raise
        self.closed = True
        await budget_settle(reservation=self._reservation, cost=self.stream.cost)
        _rollout_done(self.stream.failover, self.call, answered=self.stream.error is None)

    async def aclose(self) -> None:
        """End the answer however far it was read, once: the upstream call cancelled, the
        attempt recorded, its cost settled (also when no byte of it was ever sent)."""
        if self.closed:
            return
        self.closed = True
        await self.stream.aclose()
        budget_settle_soon(reservation=self._reservation, cost=self.stream.cost)
        _rollout_done(self.stream.failover, self.call, answered=False)

    @property
    def latency_ms(self) -> int:
        return _ms_since(self.call.started)

    def routing(self, *, attempts: bool = False) -> dict:
        """The routing explanation of this answer."""
        return routing_explained(self.stream.failover, attempts=attempts)


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)

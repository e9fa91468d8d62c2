"""Failover along a route's chain: the only code that knows about fallback.

One loop (``Failover.run``) serves plain calls, streams and probes: it walks the chain,
skips what cannot help, bounds each attempt by the route's deadlines, turns every failure
into a recorded attempt (ledger row, circuit breaker, metrics and log line) and returns the
first success. What an attempt *is* (a chat call, opening a stream, a probe) is the
caller's. A request's end (answered, abandoned, or a RoutingError out of ``run``) is
reported once, with its outcome (``concluded``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Container, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Generic, TypeVar

from ..models import UsageRecord
from ..observability.events import attempt_reported, failover_reported, request_reported
from ..providers.base import ErrorKind, ModelSpec, ProviderError
from ..runtime import runtime
from .capabilities import Needs
from .deadline import Deadline
from .health import HALF_OPEN, HealthBoard, health_record
from .snapshot import KeySpec, RouteSpec, Snapshot
from .strategies import Choice
from .trial import Trial, trial_claim, trial_new, trial_release

log = logging.getLogger("modelhub.routing")
MILLION = Decimal(1_000_000)
OK = "ok"
CLIENT_GONE = "client_disconnected"
SKIPPED = "skipped"
T = TypeVar("T")


class RoutingError(Exception):
    """A request the router cannot answer; ``status`` is the HTTP status to give."""

    status = 503
    code = "routing_error"

    def __init__(self, message: str, *, attempts=(), details=None):
        super().__init__(message)
        self.message, self.attempts, self.details = message, list(attempts), details


class UnknownRoute(RoutingError):
    status, code = 404, "unknown_route"


class RouteUnavailable(RoutingError):
    status, code = 503, "route_unavailable"


class CallerError(RoutingError):
    """The provider refused the caller's own request (a 400): no other model would differ."""

    status, code = 400, "provider_rejected_request"


class NoCapableModel(RoutingError):
    """No model of the route can serve what the request needs: nothing was called."""

    status, code = 400, "no_capable_model"


class ChainExhausted(RoutingError):
    status, code = 503, "all_models_failed"


class DeadlineExceeded(RoutingError):
    status, code = 504, "deadline_exceeded"


@dataclass(slots=True, eq=False)  # compared by identity: one attempt is one object
class Attempt:
    model: ModelSpec
    position: int
    outcome: str
    latency_ms: int
    error: ProviderError | None = None
    reason: str | None = None  # why a skipped model was not called
    route: str = ""  # the route the model came from (the fallback route's, past the chain)

    def as_dict(self) -> dict:
        data = {
            "model": self.model.model_id,
            "provider": self.model.provider.name,
            "route": self.route,
            "outcome": self.outcome,
            "latency_ms": self.latency_ms,
        }
        if self.error is not None:
            data["error"] = self.error.message
        if self.reason is not None:
            data["reason"] = self.reason
        return data


@dataclass(slots=True)
class Success(Generic[T]):
    """What the loop hands back: the attempt's value and where in the chain it came from."""

    value: T
    model: ModelSpec
    position: int
    started: float

    @property
    def source(self) -> str:
        return "primary" if self.position == 0 else f"fallback_{self.position}"


def cost_of(model: ModelSpec, input_tokens: int, output_tokens: int) -> Decimal:
    """Exact cost from provider-reported tokens; never rounded here."""
    return (input_tokens * model.input_price_per_mtok + output_tokens * model.output_price_per_mtok) / MILLION


def route_lookup(snapshot: Snapshot, name: str) -> RouteSpec:
    """The route ``name``, or a one-model route when ``name`` is a model id (the forced
    model instead, under FORCE_MODEL)."""
    route = snapshot.routes.get(name)
    if route is None:
        model = snapshot.models.get(name)
        if model is None:
            raise UnknownRoute(f"Unknown route or model '{name}'.")
        forced = snapshot.forced
        if forced is not None:
            return RouteSpec(name=name, enabled=True, chain=forced.chain, override=forced.override)
        return RouteSpec(name=name, enabled=True, chain=(model,))
    if not route.enabled:
        raise RouteUnavailable(f"Route '{name}' is disabled.")
    if not route.full_chain and route.strategy != "complexity":  # a complexity route may only delegate
        raise RouteUnavailable(f"Route '{name}' has no enabled model.")
    return route


def attempt_plan(
    route: RouteSpec, board: HealthBoard, now: float, skip: Container[int] = ()
) -> list[tuple[int, ModelSpec]]:
    """The chain (then the fallback route's) minus the positions in ``skip`` and models
    cooling down; when all are cooling down, the one that recovers soonest."""
    chain = route.full_chain
    usable = [i for i in range(len(chain)) if i not in skip]
    plan = [(i, chain[i]) for i in usable if board.get(chain[i].pk).available(now)]
    if plan or not usable:
        return plan
    soonest = min(usable, key=lambda i: board.get(chain[i].pk).cooldown_until)
    return [(soonest, chain[soonest])]


def adapter_error(model: ModelSpec | None, exc: Exception) -> ProviderError:
    """An adapter let an error through unnormalised (a bug): it counts as a server error,
    so the request fails over (or the probe reports it) instead of answering 500."""
    log.exception("adapter %s raised an unnormalised error", model.provider.kind if model else "?")
    return ProviderError(ErrorKind.SERVER, f"adapter error: {type(exc).__name__}", original=exc)


async def provider_call(model: ModelSpec | None, call: Awaitable[T]) -> T:
    """Await an adapter call; every failure comes out as a ProviderError."""
    try:
        return await call
    except ProviderError:
        raise
    except Exception as exc:
        raise adapter_error(model, exc) from exc


class Failover:
    """One request's walk along its route's chain: which model to try next, the time it
    may take, and the record of every attempt (ledger, health, log)."""

    def __init__(
        self,
        route: RouteSpec,
        *,
        key: KeySpec | None,
        request_id: str,
        stream: bool = False,
        probe: bool = False,
        needs: Needs | None = None,
        choice: Choice | None = None,
        ledger_route: str | None = None,
    ):
        self.route, self.key, self.request_id = route, key, request_id
        self.stream, self.probe, self.needs = stream, probe, needs
        self.choice = choice
        self.ledger_route = route.name if ledger_route is None else ledger_route
        self.attempts: list[Attempt] = []
        self.passed: list[tuple[ModelSpec, str]] = []  # passed over without an attempt, and why
        self.deadline = Deadline(budget_ms=route.latency_budget_ms, ttft_ms=route.ttft_timeout_ms, stream=stream)
        self.min_window = 0
        self.trials: dict[int, Trial] = {}  # model pk -> the trial token this request holds
        self._returning: list[asyncio.Task] = []  # trial tokens being given back (Redis deletes)
        # What the request's end reports: its attempts that reached a provider and their sums.
        self.began = time.perf_counter()
        self.calls, self.tokens, self.cost = 0, (0, 0), Decimal(0)
        self.outcome: str | None = None  # set once the request has ended
        self._failed: Attempt | None = None  # the failed attempt the next one fails over from

    async def run(self, call: Callable[[ModelSpec], Awaitable[T]]) -> Success[T]:
        """``call(model)`` on each candidate in turn until one succeeds. A failure the
        caller caused (its own 400) ends the walk; so does the route's deadline."""
        try:
            return await self._walk(call)
        except RoutingError as exc:
            self.concluded(ErrorKind.TIMEOUT.value if isinstance(exc, DeadlineExceeded) else self._last_outcome())
            raise

    async def trials_returned(self) -> None:
        """Wait until the trial tokens given back so far are: a caller whose loop ends with
        the request (asyncio.run, as shadow calls do) awaits this first, else the loop's end
        would cancel the deletes and the model would be skipped everywhere until the token
        expired. Not awaited by ``run`` itself: a client leaving while it waited would lose
        an answer already paid for. Shielded: a cancellation does not cut the deletes short."""
        returning, self._returning = self._returning, []
        if returning:
            await asyncio.shield(asyncio.gather(*returning, return_exceptions=True))

    async def _walk(self, call: Callable[[ModelSpec], Awaitable[T]]) -> Success[T]:
        for position, model in self.candidates():
            if not await self.trial_admit(model):
                continue
            self.deadline.start()  # at the first attempt: what came before it (Redis) takes none of it
            seconds, by_deadline = self.deadline.attempt_timeout()
            started = time.perf_counter()
            try:
                async with asyncio.timeout(seconds):
                    value = await provider_call(model, call(model))
            except ProviderError as error:
                self.failed(model, position, error, started)
                continue
            except TimeoutError:
                self.timed_out(model, position, started, seconds, by_deadline)
                continue
            except asyncio.CancelledError:
                self.abandoned(Attempt(model, position, CLIENT_GONE, 0), started)
                raise
            return Success(value, model, position, started)
        raise self.exhausted()

    def candidates(self) -> Iterator[tuple[int, ModelSpec]]:
        """(position, model) in failover order, minus those that cannot help."""
        skipped = self.incapable()
        board, now = runtime().routing.board, time.time()
        plan = attempt_plan(self.route, board, now, skipped)
        if len(plan) + len(skipped) < len(self.route.full_chain):
            self.cooling_note(plan, skipped, board, now)
        for position, model in plan:
            if model.context_window <= self.min_window:
                self.passed.append((model, f"context window {model.context_window} too small for the request"))
                continue
            if not model.provider.api_key:  # not configured: skipped, nothing reached the provider
                error = ProviderError(ErrorKind.AUTH, f"{model.provider.api_key_env} is not set")
                self.listed(Attempt(model, position, ErrorKind.AUTH.value, 0, error, reason="key unset"))
                continue
            if self.deadline.expired():
                raise self.deadline_passed()
            if self._failed is not None:
                self.failing_over(self._failed)
            yield position, model

    def failing_over(self, failed: Attempt) -> None:
        """Moving on from a failed attempt (its line, and the next attempt's, say so)."""
        self._failed = None
        failover_reported(self, failed)

    def cooling_note(self, plan: list, skipped: set[int], board: HealthBoard, now: float) -> None:
        """Name the models the plan leaves out because they are cooling down."""
        planned = {position for position, _ in plan}
        for position, model in enumerate(self.route.full_chain):
            if position not in planned and position not in skipped:
                until = datetime.fromtimestamp(board.get(model.pk).cooldown_until, UTC)
                self.passed.append((model, f"cooling down until {until:%H:%M:%S} UTC"))

    def incapable(self) -> set[int]:
        """The positions whose model cannot serve what the request needs, each listed as a
        skipped attempt; raises NoCapableModel (nothing called) when that is every model."""
        for model, reason in self.route.replaced:  # retired: a successor took its place
            self.listed(Attempt(model, -1, SKIPPED, 0, reason=reason))
        if self.needs is None:
            return set()
        chain = self.route.full_chain
        reasons = {i: self.needs.unmet(model) for i, model in enumerate(chain)}
        skipped = {i for i, reason in reasons.items() if reason is not None}
        for i in sorted(skipped):
            self.listed(Attempt(chain[i], i, SKIPPED, 0, reason=reasons[i]))
        if chain and len(skipped) == len(chain):
            raise NoCapableModel(
                f"No model of route '{self.route.name}' can serve this request: it needs {self.needs.described()}.",
                attempts=self.attempts,
            )
        return skipped

    def listed(self, attempt: Attempt) -> Attempt:
        """Add an attempt to the answer's list, naming the route its model came from."""
        attempt.route = self.route.route_at(attempt.position)
        self.attempts.append(attempt)
        return attempt

    async def trial_admit(self, model: ModelSpec) -> bool:
        """A half-open model takes one request at a time, across processes: this one, if it
        gets the trial token; otherwise the model is skipped (no attempt). Probes always try."""
        health = runtime().routing.board.get(model.pk)
        if self.probe or health.effective_state(time.time()) != HALF_OPEN:
            return True
        # held before the take: cancelled after Redis set it, the request still gives it back
        self.trials[model.pk] = trial_new(pk=model.pk, cooldown_until=health.cooldown_until)
        try:
            taken = await trial_claim(self.trials[model.pk])
        except asyncio.CancelledError:  # the client left: the token back before this request ends
            self.trial_end(model, changed=False)
            await self.trials_returned()
            raise
        if not taken:
            del self.trials[model.pk]
            log.info("route=%s model=%s skipped: another request is its trial", self.route.name, model.model_id)
            self.passed.append((model, "recovering: another request is its trial"))
            return False
        return True

    def trial_end(self, model: ModelSpec, *, changed: bool) -> None:
        """A trial whose verdict changed the model's health keeps its token until it expires
        (workers that have not yet heard of the verdict still skip the model); one that
        changed nothing gives it back."""
        trial = self.trials.pop(model.pk, None)
        if trial is not None and not changed:
            returning = trial_release(trial)
            if returning is not None:
                self._returning.append(returning)

    def failed(
        self,
        model: ModelSpec,
        position: int,
        error: ProviderError,
        started: float,
        *,
        tokens: tuple[int, int] = (0, 0),
        ttft_ms: int | None = None,
        attempt: Attempt | None = None,
    ) -> None:
        """Record a failed attempt; raise when failing over cannot help (the caller's 400)."""
        attempt = attempt or Attempt(model, position, "", 0)
        attempt.outcome, attempt.error = error.kind.value, error
        self.record(attempt, started, tokens=tokens, ttft_ms=ttft_ms)
        self._failed = attempt
        self.trial_end(model, changed=health_record(model, error))
        if error.kind is ErrorKind.CONTEXT_TOO_LONG:
            self.min_window = model.context_window
        elif not error.retryable:
            raise CallerError(error.message, attempts=self.attempts)

    def timed_out(
        self, model: ModelSpec, position: int, started: float, seconds: float | None, by_deadline: bool
    ) -> None:
        """No first token in time: the model's fault when its own limit passed (fail over).
        When the route's deadline passed, the request ends here with 504, and a stream's
        model is at fault too if it had the whole budget (no earlier attempt used any) and
        sent no first token in it: else a model that accepts and never answers would take
        every request's budget, never cooled, while the fallbacks sit unused. Not a plain
        call's: its first token comes with the whole answer, whose length the caller sets,
        so a healthy model writing a long answer would be cooled. Nor a model cut by what
        earlier attempts left."""
        if not by_deadline:
            return self.failed(
                model, position, ProviderError(ErrorKind.TIMEOUT, f"no first token within {seconds:g} s"), started
            )
        if self.stream and self.calls == 0:  # the whole budget: the breaker counts it, as for its own limit
            budget = f"the route's whole {self.deadline.budget_ms} ms deadline"
            self.failed(model, position, ProviderError(ErrorKind.TIMEOUT, f"no first token within {budget}"), started)
        else:
            error = ProviderError(ErrorKind.TIMEOUT, f"cut by the route's {self.deadline.budget_ms} ms deadline")
            self.record(Attempt(model, position, ErrorKind.TIMEOUT.value, 0, error), started)
            self.trial_end(model, changed=False)
        self._failed = None
        raise self.deadline_passed()

    def opened(self, success: Success) -> Attempt:
        """A stream's answering attempt, listed at once; recorded when the stream ends."""
        return self.listed(Attempt(success.model, success.position, "streaming", _ms_since(success.started)))

    def answered(
        self, success: Success, tokens: tuple[int, int], *, attempt: Attempt | None = None, ttft_ms: int | None = None
    ) -> Decimal:
        """Record the answering attempt; returns its exact cost."""
        model = success.model
        attempt = attempt or Attempt(model, success.position, "", 0)
        attempt.outcome = OK
        cost = self.record(attempt, success.started, tokens=tokens, ttft_ms=ttft_ms)
        self.trial_end(model, changed=health_record(model, None))
        self.concluded(OK)
        return cost

    def abandoned(
        self, attempt: Attempt, started: float, *, tokens: tuple[int, int] = (0, 0), ttft_ms: int | None = None
    ) -> Decimal:
        """The client went away during this attempt (its upstream call is cancelled)."""
        attempt.outcome = CLIENT_GONE
        self.trial_end(attempt.model, changed=False)
        cost = self.record(attempt, started, tokens=tokens, ttft_ms=ttft_ms)
        self.concluded(CLIENT_GONE)
        return cost

    def record(
        self, attempt: Attempt, started: float, *, tokens: tuple[int, int] = (0, 0), ttft_ms: int | None = None
    ) -> Decimal:
        """Queue the attempt's ledger row (listing it first if it is new); returns its cost."""
        attempt.latency_ms = _ms_since(started)
        if attempt not in self.attempts:
            self.listed(attempt)
        cost = cost_of(attempt.model, *tokens)
        number = self.attempts.index(attempt) + 1
        usage_record(
            route=self.ledger_route,
            model=attempt.model,
            attempt=attempt,
            number=number,
            key=self.key,
            request_id=self.request_id,
            tokens_in=tokens[0],
            tokens_out=tokens[1],
            cost=cost,
            stream=self.stream,
            ttft_ms=ttft_ms,
            is_probe=self.probe,
            choice=self.choice,
            routing=None if self.probe else routing_compact(self),
        )
        self.calls += 1
        self.tokens = (self.tokens[0] + tokens[0], self.tokens[1] + tokens[1])
        self.cost += cost
        attempt_reported(self, attempt, number, tokens, cost, ttft_ms)
        return cost

    def concluded(self, outcome: str) -> None:
        """The request has ended (answered, or why not): reported once; probes are not requests."""
        if self.outcome is None and not self.probe:
            self.outcome = outcome
            request_reported(self, outcome, time.perf_counter() - self.began)

    def _last_outcome(self) -> str:
        """How a request that got no answer ended: as its last attempt did (or "skipped"
        when it called no model)."""
        return self.attempts[-1].outcome if self.attempts else SKIPPED

    def deadline_passed(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"Route '{self.route.name}' passed its {self.deadline.budget_ms} ms deadline.", attempts=self.attempts
        )

    def exhausted(self) -> ChainExhausted:
        return ChainExhausted(
            f"Every model of route '{self.route.name}' failed.",
            attempts=self.attempts,
            details=_chain_states(self.route, runtime().routing.board),
        )


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def usage_record(
    *,
    route: str,
    model: ModelSpec,
    attempt: Attempt,
    number: int,
    key: KeySpec | None,
    request_id: str,
    tokens_in: int = 0,
    tokens_out: int = 0,
    cost: Decimal = Decimal(0),
    is_probe: bool = False,
    stream: bool = False,
    ttft_ms: int | None = None,
    choice: Choice | None = None,
    routing: dict | None = None,
) -> None:
    """Queue the ledger row of one attempt, with how its request was routed."""
    fields = {} if choice is None or is_probe else _routing_fields(choice, tokens_in, tokens_out)
    runtime().ledger.submit_usage(
        UsageRecord(
            created_at=datetime.now(UTC),
            request_id=request_id,
            route=route,
            provider=model.provider.name,
            model=model.model_id,
            api_key_id=key.pk if key else None,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_usd=cost,
            latency_ms=attempt.latency_ms,
            ttft_ms=ttft_ms,
            outcome=attempt.outcome,
            attempt=number,
            is_fallback=attempt.position > 0,
            is_probe=is_probe,
            stream=stream,
            error_message=attempt.error.message[:1000] if attempt.error else "",
            routing=routing,
            **fields,
        )
    )


def _routing_fields(choice: Choice, tokens_in: int, tokens_out: int) -> dict:
    """The ledger's record of the routing decision; for a complexity route, also what the
    complex route's primary would have cost for the same tokens."""
    fields: dict = {"strategy": choice.strategy, "arm": choice.arm}
    classification = choice.classification
    if classification is not None:
        fields.update(tier=classification.tier, category=classification.category, score=classification.score)
    if choice.strong is not None:
        fields["counterfactual_cost_usd"] = cost_of(choice.strong, tokens_in, tokens_out)
    return fields


def skipped_models(failover: Failover) -> list[tuple[ModelSpec, str]]:
    """Every model the request did not call, and why: retired (its successor took its
    place), without a capability the request needs, its provider's key unset, cooling
    down, another request's recovery trial, a context window too small."""
    skipped = [(a.model, _skip_reason(a)) for a in failover.attempts if a.reason is not None]
    return skipped + failover.passed


def _skip_reason(attempt: Attempt) -> str:
    if attempt.error is not None:  # its key is unset: the reason says so, the error names the variable
        return f"{attempt.reason}: {attempt.error.message}"
    return attempt.reason or attempt.outcome


def routing_compact(failover: Failover) -> dict | None:
    """The ledger's copy of the explanation: what its columns (strategy, tier, arm) do not
    hold. None for a request routed as plainly as possible."""
    data: dict = {}
    if failover.route.override:
        data["override"] = failover.route.override
    skipped = skipped_models(failover)
    if skipped:
        data["skipped"] = [[model.model_id, reason] for model, reason in skipped]
    choice = failover.choice
    if choice is not None and choice.route.name != failover.ledger_route and failover.ledger_route:
        data["via"] = choice.route.name
    return data or None


def _chain_states(route: RouteSpec, board: HealthBoard) -> list[dict]:
    now = time.time()
    states = []
    for model in route.full_chain:
        health = board.get(model.pk)
        states.append(
            {
                "model": model.model_id,
                "provider": model.provider.name,
                "state": health.effective_state(now),
                "cooldown_until": (
                    datetime.fromtimestamp(health.cooldown_until, UTC).isoformat()
                    if health.cooldown_until > now
                    else None
                ),
                "last_error_kind": health.last_error_kind or None,
                "last_error": health.last_error_message or None,
            }
        )
    return states

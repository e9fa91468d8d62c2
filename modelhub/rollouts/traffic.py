"""What a request on a route with a rollout leaves behind, off the request: on the canary
arm, the candidate's outcome counted and its step judged; in the shadow phase, a copy of
an answered request replayed on the candidate by a Celery task (never streamed, its answer
discarded, costed in the ledger as arm "shadow" under no key, stopped at its budget)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from decimal import Decimal

from django.db.models import F

from ..models import Rollout
from ..providers.base import ChatRequest, Image, Message, ResponseFormat, Tool, ToolCall
from ..routing.capabilities import Needs, needs_of
from ..routing.router import CLIENT_GONE, SKIPPED, Failover, RoutingError
from ..routing.snapshot import RolloutSpec, RouteSpec
from ..routing.strategies import CANARY, SHADOW, Choice, canary_bucket
from ..routing.version import config_version_bump
from ..runtime import runtime
from .analysis import rollout_analyze
from .changes import Phase
from .work import rollout_work


def rollout_request_done(failover: Failover, request_for: Callable, *, answered: bool) -> None:
    """Off the request: count a canary request and judge its step, or copy an answered
    request to the candidate in the shadow phase. Costs the request a queue put."""
    choice = failover.choice
    if choice is None or choice.route.rollout is None:
        return
    spec = choice.route.rollout
    if choice.arm == CANARY:
        failed = candidate_failed(failover, spec)
        if failed is not None:
            rollout_work().submit(lambda: rollout_analyze(spec, rollout_work().counts.add(spec.counts, failed)))
    elif answered and spec.shadow_open and canary_bucket(spec.pk, failover.request_id) < spec.shadow_percent:
        rollout_work().submit(lambda: shadow_dispatch(spec, request_for(spec.candidate)))


def candidate_failed(failover: Failover, spec: RolloutSpec) -> bool | None:
    """Whether the candidate failed the request: it was called and failed, or sat out
    because its breaker has it out. None where it had no fair chance (the caller's own bad
    request, a capability it lacks, a client that went away, another request's trial)."""
    candidate = spec.candidate
    attempt = next((a for a in failover.attempts if a.model.pk == candidate.pk), None)
    if attempt is None:
        return None if runtime().routing.board.get(candidate.pk).available(time.time()) else True
    if attempt.outcome == "ok":
        return False
    error = attempt.error
    return None if attempt.outcome in (CLIENT_GONE, SKIPPED) or (error is not None and not error.retryable) else True


def shadow_dispatch(spec: RolloutSpec, request: ChatRequest) -> None:
    from ..tasks import shadow_replay

    shadow_replay.delay(spec.pk, spec.route, request_dump(request))


def shadow_replay(*, rollout: int, route: str, request: ChatRequest) -> str:
    """Replay one copy on the candidate (the Celery task): claimed against the budget
    first, its real cost added after. Shadows in flight at once can each pass the budget
    by their own cost; none starts once it is spent."""
    snapshot_route = runtime().routing.current_sync().routes.get(route)
    spec = snapshot_route.rollout if snapshot_route is not None else None
    if spec is None or spec.pk != rollout or spec.phase != Phase.SHADOW:
        return "not in the shadow phase"
    needs = needs_of(request)
    if needs.unmet(spec.candidate) is not None:  # a request it cannot serve tells nothing of it
        return "beyond the candidate"
    rows = Rollout.objects.filter(pk=rollout, phase=Phase.SHADOW, shadow_spent_usd__lt=F("shadow_budget_usd"))
    if not rows.update(shadow_requests=F("shadow_requests") + 1):
        _shadow_close(rollout)
        return "budget spent"
    failover, cost = asyncio.run(_shadow_call(spec, request, needs))
    Rollout.objects.filter(pk=rollout).update(shadow_spent_usd=F("shadow_spent_usd") + cost)
    if Rollout.objects.filter(pk=rollout, shadow_spent_usd__gte=F("shadow_budget_usd")).exists():
        _shadow_close(rollout)
    failed = candidate_failed(failover, spec)
    if failed is not None:
        rollout_analyze(spec, rollout_work().counts.add(spec.counts, failed))
    return "failed" if failed else "ok"


async def _shadow_call(spec: RolloutSpec, request: ChatRequest, needs: Needs) -> tuple[Failover, Decimal]:
    """The copy on the candidate alone, through the router's loop: its ledger row (arm
    "shadow", no key), its deadlines, its breaker, its statistics."""
    route = RouteSpec(spec.route, True, (spec.candidate,))
    choice = Choice(route, arm=SHADOW, rollout=spec.pk)
    failover = Failover(route, key=None, request_id=uuid.uuid4().hex, needs=needs, choice=choice)
    chat = runtime().adapters.get(spec.candidate.provider).chat
    try:
        success = await failover.run(lambda model: chat(model, request))
        result = success.value
        return failover, failover.answered(success, (result.input_tokens, result.output_tokens))
    except RoutingError:
        return failover, Decimal(0)
    finally:
        await failover.trials_returned()  # this loop ends with the copy: its trial token back first
        await runtime().adapters.close()


def _shadow_close(pk: int) -> None:
    """Every process stops copying on its next request."""
    Rollout.objects.filter(pk=pk, phase=Phase.SHADOW).update(reason="Shadow budget spent: no more copies.")
    config_version_bump()


def request_dump(request: ChatRequest) -> dict:
    """The request as JSON for the task queue."""
    return asdict(request)


def request_load(data: dict) -> ChatRequest:
    """The request ``request_dump`` gave."""
    messages = tuple(
        Message(
            **{
                **message,
                "images": tuple(Image(**image) for image in message["images"]),
                "tool_calls": tuple(ToolCall(**call) for call in message["tool_calls"]),
            }
        )
        for message in data["messages"]
    )
    response_format = data["response_format"]
    return ChatRequest(
        **{
            **data,
            "messages": messages,
            "tools": tuple(Tool(**tool) for tool in data["tools"]),
            "response_format": ResponseFormat(**response_format) if response_format else None,
            "stop": tuple(data["stop"]),
        }
    )

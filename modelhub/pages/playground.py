"""The chat playground (``/playground/``): pick a route or a model, chat with streaming, and
see for each answer which model answered and why.

Its chat endpoint (``/playground/chat``) is the native ``ChatView`` itself, served by the
web handler (which has sessions) instead of the sessionless API handler: a staff user's
admin session with CSRF instead of a bearer key, and as the caller (``request.auth``) the
user's playground key, an ApiKey made on first use, without limits, whose secret nobody
ever sees. So the whole native path runs as for any client: routing, failover, the ledger
(the key's rows), conversations (the key's). The page keeps the ``conversation_id`` in its
URL, so a reload shows the conversation's earlier turns and continues it."""

from __future__ import annotations

import json
import time

from asgiref.sync import sync_to_async
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication

from .. import selectors, services
from ..api.base import HasApiKey
from ..api.views import ChatView
from ..audit import Actor
from ..models import AIModel, ConfigChange
from ..providers.base import ModelSpec
from .access import STAFF_ONLY, is_staff, staff_json, staff_page
from .dashboard import page_context
from .display import usd
from .simulator import SimulatorError, fault_clear, fault_set, simulator_of

PLAYGROUND_KEY = "playground: {username}"
REVOKED = "Your playground key is revoked or expired (admin → API keys); an operator can make it active again."
MAX_CONVERSATION_ID = 200  # as ChatInput's conversation_id


def console_actor(user) -> Actor:
    return Actor(user.get_username(), ConfigChange.Source.ADMIN)


def playground_key_hash(user) -> str:
    """The hash of the user's playground key, the key made (audited) on first use."""
    name = PLAYGROUND_KEY.format(username=user.get_username())[:100]
    key = selectors.api_key_of_user(user=user, name=name)
    if key is None:
        key, _ = services.api_key_create(name=name, user=user, by=console_actor(user))
    return key.key_hash


class PlaygroundAuthentication(SessionAuthentication):
    """The admin session of a staff user, with CSRF, and the user's playground key. The
    user is resolved before DRF runs (``PlaygroundChatView.async_dispatch``): in the event
    loop, Django's lazy ``request.user`` would query the database synchronously."""

    def authenticate(self, request):
        user, digest = getattr(request._request, "playground", (None, None))
        if user is None:
            return None
        self.enforce_csrf(request)
        key = request.parser_context["view"].snapshot.keys.get(digest)
        if key is not None and key.expired(time.time()):
            key = None
        return user, key


class StaffWithKey(HasApiKey):
    """A staff user with an active playground key; the key's route limits hold (an operator
    may set them in admin like any key's)."""

    def has_permission(self, request, view):
        if request.auth is None:
            raise exceptions.PermissionDenied(REVOKED if is_staff(request.user) else STAFF_ONLY)
        return True


class PlaygroundChatView(ChatView):
    """``POST /api/v1/pam/chat`` for the playground page: the same body and answer. Not
    part of the API's schema: a page's endpoint, on a session."""

    schema = None
    authentication_classes = [PlaygroundAuthentication]
    permission_classes = [StaffWithKey]

    async def async_dispatch(self, request, *args, **kwargs):
        user = await request.auser()
        digest = await sync_to_async(playground_key_hash)(user) if is_staff(user) else None
        request.playground = (user, digest) if digest else (None, None)
        return await super().async_dispatch(request, *args, **kwargs)


# --- the page ------------------------------------------------------------------------


def targets() -> list[dict]:
    """What the picker offers: the enabled routes, then the models (by model id), each with
    its primary and whether the built-in simulator serves that primary (the fault button)."""
    snapshot = selectors.routing_snapshot()
    known: dict = {}  # the simulator's answer per address, asked once for the whole page
    found = [
        _target(name, "route", spec.chain[0] if spec.chain else None, known, spec.strategy)
        for name, spec in sorted(snapshot.routes.items())
        if spec.enabled
    ]
    models = {model.pk: model for model in snapshot.models.values()}
    found += [_target(model.model_id, "model", model, known) for model in sorted(models.values(), key=_model_order)]
    return found


def _model_order(model: ModelSpec) -> tuple[str, str]:
    return model.provider.name, model.model_id


def _target(name: str, kind: str, primary: ModelSpec | None, known: dict, strategy: str = "") -> dict:
    return {
        "name": name,
        "kind": kind,
        "strategy": strategy,
        "primary": primary.model_id if primary else None,
        "simulated": primary is not None and simulator_of(primary, known=known) is not None,
    }


def conversation_shown(user, conversation_id: str | None) -> dict | None:
    """The earlier turns of the user's conversation (kept by the chat endpoint)."""
    if not conversation_id:
        return None
    name = PLAYGROUND_KEY.format(username=user.get_username())[:100]
    key = selectors.api_key_of_user(user=user, name=name)
    conversation = selectors.conversation_of(
        conversation_id=conversation_id, user=user, api_key_id=key.pk if key else None
    )
    if conversation is None:
        return None
    turns = [
        {"role": m.role, "content": m.content, "model": m.model, "cost": usd(m.cost_usd)}
        for m in conversation.messages.all()
        if m.role in ("user", "assistant")
    ]
    return {"route": conversation.route, "turns": turns, "cost": float(conversation.cost_usd)}


@staff_page
def playground(request):
    conversation_id = request.GET.get("conversation", "")[:MAX_CONVERSATION_ID] or None
    conversation = conversation_shown(request.user, conversation_id)
    offered = targets()
    names = [t["name"] for t in offered]
    asked = request.GET.get("route") or (conversation or {}).get("route")
    selected = asked if asked in names else "pam" if "pam" in names else (names[0] if names else "")
    config = {
        "conversationId": conversation_id,
        "conversationCost": (conversation or {}).get("cost", 0),
        "targets": {t["name"]: {"primary": t["primary"], "simulated": t["simulated"]} for t in offered},
    }
    context = page_context(
        request,
        "Playground",
        targets=offered,
        selected=selected,
        conversation=conversation,
        conversation_id=conversation_id,
        config=config,
    )
    return render(request, "modelhub/playground.html", context)


# --- failing the primary on the simulator ------------------------------------------------


def _bad_request(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": {"type": "invalid_request_error", "message": message}}, status=status)


def primary_of(name: str) -> ModelSpec | None:
    """The first model of route ``name`` as chat sees it, or the model ``name`` itself."""
    snapshot = selectors.routing_snapshot()
    spec = snapshot.routes.get(name)
    if spec is not None:
        return spec.chain[0] if spec.chain else None
    return snapshot.models.get(name)


@require_POST
@staff_json
def fault(request):
    """``{"route": <route or model>, "action": "fail" | "restore"}``: make the simulator
    fail every call of the route's primary (529, until restored), or clear that fault and
    put the model back in rotation (its health reset, audited)."""
    try:
        body = json.loads(request.body)
        name, action = body["route"], body["action"]
    except (ValueError, TypeError, KeyError):
        return _bad_request('Expected a JSON object with "route" and "action" ("fail" or "restore").')
    if not isinstance(name, str) or action not in ("fail", "restore"):
        return _bad_request('"route" is a route name or model id; "action" is "fail" or "restore".')
    primary = primary_of(name)
    if primary is None:
        return _bad_request(f"No route or model {name[:200]!r} with a model to fail.", 404)
    try:
        answer = fault_set(primary) if action == "fail" else fault_clear(primary)
    except SimulatorError as exc:
        return _bad_request(str(exc), 409)
    if action == "restore":
        services.health_reset(models=AIModel.objects.filter(pk=primary.pk), by=console_actor(request.user))
    return JsonResponse({"route": name, "model": primary.model_id, "action": action, "simulator": answer})

"""Websocket chat: ``ws/chat/`` and the PAM hybrid document's ``/api/v1/pam-hybrid/ws/<user_id>``.

The consumer parses, calls the chat service and formats, as the native chat view does:
one streamed answer per ``chat`` message (``delta`` events, then ``done`` with the native
answer's metadata), a conversation kept by ``conversation_id`` (so a reconnect, to any
process, continues it), every failure an ``error`` event on a socket that stays open.
The protocol, message by message, is in the README ("Websocket chat").

- Auth: an API key in the query (``?api_key=``, or ``?token=`` as the hybrid document's
  client sends it), an ``Authorization: Bearer`` header, or a first message ``{"type":
  "auth", "api_key"}``. The key is looked up in the routing snapshot again for every
  message, so a revoked or expired key stops at its next message.
- Messages are answered one at a time, in the order they came (each turn waits for the
  previous, so it sees it in its history); a ``ping`` is answered at once.
- A client that leaves mid-answer: the answer is cancelled upstream, its attempt recorded
  in the ledger and the conversation's turn recorded as far as it went.
- The channel layer is not used: each answer goes to the socket that asked, and memory
  lives in the database. A consumer on the layer would listen on it from its first
  moment, and die with Redis, which chat itself survives (routing snapshot, spooled ledger)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import aclosing
from datetime import UTC, datetime
from urllib.parse import parse_qs

import orjson
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from rest_framework import exceptions

from ..api.auth import bearer_token
from ..api.base import snapshot_current
from ..api.errors import UNAUTHORIZED, ApiError, ServiceUnavailable, api_error_of, native_body
from ..api.serializers import tool_deltas_out
from ..api.views import CONVERSATION_UNAVAILABLE, ChatInput, StreamSummary
from ..chat import ChatCall, ChatStream, chat_admit, chat_stream
from ..conversations import Memory, memory_open
from ..observability.context import request_id_bind
from ..routing.snapshot import KeySpec, Snapshot
from ..services import API_KEY_EXPIRED, api_key_hash

log = logging.getLogger("modelhub.ws")

AUTH_FIRST = 'Authenticate first: {"type": "auth", "api_key": "<key>"} (or ?api_key=<key> on the URL).'
NO_KEY = "api_key must be a non-empty string."
NOT_AN_OBJECT = 'A message is a JSON object with a "type": "auth", "chat", "message" or "ping".'
# What a chat message carries besides the chat body (the hybrid document's client sends
# ``content`` for the text, ``context`` and ``voice_input`` the hub has no use for).
NOT_BODY = frozenset({"type", "id", "stream", "content", "context", "voice_input"})
ID_MAX_CHARS = 200
MAX_WAITING = 16  # chat messages of one socket being answered or waiting their turn
TOO_MANY = f"{MAX_WAITING} messages are being answered or waiting on this socket; wait for their answers."


class ChatConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = None  # see the module's docstring
    default_route = "pam"

    async def connect(self) -> None:
        self.key_hash: str | None = None
        self.turns: set[asyncio.Task] = set()
        self.in_order = asyncio.Lock()
        await self.accept()
        token = (  # pam.asgi takes a key off the URL before the handshake is logged
            self.scope.get("modelhub_query_key")
            or _query(self.scope, "api_key")
            or _query(self.scope, "token")
            or _header_token(self.scope)
        )
        if token is not None:
            await self.authenticate(token)

    async def disconnect(self, code) -> None:
        """The client left: its answers in flight are cancelled (and recorded as far as they went)."""
        for task in self.turns:
            task.cancel()
        await asyncio.gather(*self.turns, return_exceptions=True)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        raw = text_data if text_data is not None else bytes_data
        if len(raw.encode() if isinstance(raw, str) else raw) > settings.MODELHUB["MAX_BODY_BYTES"]:
            limit = settings.MODELHUB["MAX_BODY_BYTES"]
            return await self.error(ApiError(413, "invalid_request_error", f"A message is larger than {limit} bytes."))
        message = _object(raw)
        if message is None:
            return await self.error(ApiError(400, "invalid_request_error", NOT_AN_OBJECT, "type"))
        kind = message.get("type")
        if kind == "ping":
            await self.emit({"type": "pong", "timestamp": _now(), **_echo(message)})
        elif kind == "auth":
            await self.authenticate(message.get("api_key"), _echo(message))
        elif kind in ("chat", "message"):
            if len(self.turns) >= MAX_WAITING:
                return await self.error(ApiError(429, "rate_limit_exceeded", TOO_MANY), echo=_echo(message))
            task = asyncio.get_running_loop().create_task(self.turn(message))
            self.turns.add(task)
            task.add_done_callback(self.turns.discard)
        else:
            await self.error(ApiError(400, "invalid_request_error", NOT_AN_OBJECT, "type"), echo=_echo(message))

    # --- auth ---------------------------------------------------------------------

    async def authenticate(self, token, echo: dict | None = None) -> None:
        """Take ``token`` as this socket's key (``ready``), or say why not (the socket stays
        open for another try)."""
        echo = echo or {}
        if not isinstance(token, str) or not token:
            return await self.error(ApiError(400, "invalid_request_error", NO_KEY, "api_key"), echo=echo)
        digest = api_key_hash(token)
        try:
            self.key_of(await snapshot_current(), digest)
        except exceptions.APIException as exc:
            return await self.failed(exc, None, echo)
        self.key_hash = digest
        await self.emit({"type": "ready", **self.defaults(), **echo})

    def key_of(self, snapshot: Snapshot, digest: str | None) -> KeySpec:
        """The key of ``digest`` as the snapshot has it now; raises 401 otherwise."""
        if digest is None:
            raise exceptions.NotAuthenticated(AUTH_FIRST)
        key = snapshot.keys.get(digest)
        if key is None:
            raise exceptions.AuthenticationFailed(UNAUTHORIZED)
        if key.expired(time.time()):
            raise exceptions.AuthenticationFailed(API_KEY_EXPIRED)
        return key

    def defaults(self) -> dict:
        """What a chat message that names no route (or conversation) gets."""
        return {"route": self.default_route}

    # --- one chat message ---------------------------------------------------------------

    async def turn(self, message: dict) -> None:
        async with self.in_order:
            request_id = os.urandom(16).hex()
            request_id_bind(request_id)  # on its log lines and the Celery tasks it starts
            try:
                await self.answer(message, request_id, time.perf_counter())
            except OSError as exc:  # the client is gone; what was answered is recorded
                log.debug("websocket client left during request %s: %s", request_id, exc)
            except Exception:  # a bug: logged, the socket goes on
                log.exception("unexpected error in websocket request %s", request_id)

    async def answer(self, message: dict, request_id: str, started: float) -> None:
        echo = _echo(message)
        try:
            call = await self.call_of(message, request_id, started)
            memory = await _memory(call)
            chat = await chat_stream(memory.call_with(call) if memory is not None else call)
        except Exception as exc:  # noqa: BLE001 - every failure is the client's error event
            return await self.failed(exc, request_id, echo)
        context = {"request_id": request_id, "conversation_id": call.conversation_id}
        await self.relay(chat, memory, context, hybrid=message["type"] == "message", echo=echo)

    async def call_of(self, message: dict, request_id: str, started: float) -> ChatCall:
        """The message as a call to the chat service, once the key may make it."""
        snapshot = await snapshot_current()
        key = self.key_of(snapshot, self.key_hash)
        body = {name: value for name, value in message.items() if name not in NOT_BODY}
        if "message" not in body and "messages" not in body and "content" in message:
            body["message"] = message["content"]  # the hybrid document's shape
        serializer = ChatInput(data=body, context={"default_route": self.default_route})
        serializer.is_valid(raise_exception=True)
        data, route = serializer.validated_data, serializer.validated_data["route"]
        await chat_admit(key=key, route=route)
        conversation = data["conversation_id"] if "conversation_id" in body else self.defaults().get("conversation_id")
        return ChatCall(snapshot, key, route, data["request"], request_id, started, conversation_id=conversation)

    async def relay(self, chat: ChatStream, memory: Memory | None, context: dict, *, hybrid: bool, echo: dict) -> None:
        """The answer's deltas (none for the hybrid document's ``message``, answered whole),
        the turn recorded however the stream ended, then ``done`` (``response``), or
        ``error`` when a failure cut the answer."""
        heard = memory.heard if memory is not None else []
        try:
            async with aclosing(chat.deltas()) as deltas:  # type: ignore[type-var]  # an async generator
                async for piece in deltas:
                    if isinstance(piece, str):
                        heard.append(piece)
                        if not hybrid:
                            await self.emit({"type": "delta", "content": piece, **echo})
                    elif not hybrid:
                        await self.emit({"type": "delta", "tool_calls": tool_deltas_out(piece), **echo})
        finally:
            await chat.aclose()
            if memory is not None:
                await memory.streamed(chat)
        summary = StreamSummary(chat, context=context).data
        error = chat.stream.error
        if error is not None:
            cut = {"type": "stream_error", "kind": error.kind.value, "message": error.message}
            await self.emit({"type": "error", "status": 502, "message": error.message, "error": cut, **summary, **echo})
        elif hybrid:
            await self.emit(_hybrid_response("".join(heard), summary) | echo)
        else:
            await self.emit({"type": "done", **summary, **echo})

    async def failed(self, exc: Exception, request_id: str | None, echo: dict) -> None:
        error = api_error_of(exc)
        if error is None:
            log.exception("unexpected error in websocket request %s", request_id)
            error = ApiError(500, "internal_error", "The hub failed to handle this message; it is logged.")
        await self.error(error, request_id, echo)

    # --- events ------------------------------------------------------------------------

    async def error(self, error: ApiError, request_id: str | None = None, echo: dict | None = None) -> None:
        """``{"type": "error", "status", "message", "error": {...}, "request_id"?}``: the
        native error body, with the HTTP status it stands for (and ``retry_after``)."""
        event = {"type": "error", "status": error.status, "message": error.message, **native_body(error, request_id)}
        if "Retry-After" in error.headers:
            event["retry_after"] = int(error.headers["Retry-After"])
        await self.emit(event | (echo or {}))

    async def emit(self, event: dict) -> None:
        await self.send(text_data=orjson.dumps(event).decode())


class HybridChatConsumer(ChatConsumer):
    """The PAM hybrid document's path: route "hybrid" by default, and the path's user has
    one conversation by default (``pam-hybrid:<user_id>``), so its client, which sends no
    conversation id, keeps its context across messages and reconnections. A message with
    its own ``conversation_id`` (null: none) chooses otherwise."""

    default_route = "hybrid"

    def defaults(self) -> dict:
        user_id = self.scope["url_route"]["kwargs"]["user_id"]
        return {"route": self.default_route, "user_id": user_id, "conversation_id": f"pam-hybrid:{user_id}"}


class NoSuchSocket(AsyncWebsocketConsumer):
    """Any other websocket path: refused at the handshake (HTTP 403)."""

    channel_layer_alias = None

    async def connect(self) -> None:
        await self.close()


async def _memory(call: ChatCall) -> Memory | None:
    try:
        return await memory_open(call)
    except DatabaseError:
        raise ServiceUnavailable(CONVERSATION_UNAVAILABLE) from None


def _hybrid_response(content: str, summary: dict) -> dict:
    """The hybrid document's ``response`` event, with the native answer's metadata beside it."""
    return {
        "type": "response",
        "content": content,
        "handler": summary["model"],
        "complexity": summary["routing"].get("tier"),
        "agent_used": None,
        "tools_called": [call["function"]["name"] for call in summary["tool_calls"]],
        "timestamp": _now(),
        **summary,
    }


def _object(raw) -> dict | None:
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None


def _echo(message: dict) -> dict:
    """The client's ``id`` for a message (a string or an integer), repeated in its events."""
    ident = message.get("id")
    if isinstance(ident, str) and len(ident) <= ID_MAX_CHARS:
        return {"id": ident}
    return {"id": ident} if isinstance(ident, int) and not isinstance(ident, bool) else {}


def _query(scope, name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None


def _header_token(scope) -> str | None:
    header = dict(scope.get("headers", ())).get(b"authorization")
    return bearer_token(header.decode("latin-1")) if header else None


def _now() -> str:
    return datetime.now(UTC).isoformat()

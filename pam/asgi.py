"""The ASGI entry point. API paths are served by a Django handler without the browser
middleware (sessions, CSRF, auth, messages, clickjacking): API clients authenticate by key,
and under ASGI every classic Django middleware costs two thread hops per request.
Websockets go to the chat consumers (Django Channels, ``modelhub.ws.routing``): ``ws/chat/``
and the PAM hybrid document's ``/api/v1/pam-hybrid/ws/<user_id>``.

Lifespan: start-up runs the override system check (``modelhub.checks``) and fails with its
message, so the server exits, unless ``MODELHUB_START_DEGRADED``, then replays the usage
spools of processes that died; shut-down writes the ledger's last rows."""

import gc
import logging
import os
import threading
from urllib.parse import parse_qsl, urlencode

from asgiref.sync import sync_to_async
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pam.settings")
web = get_asgi_application()

from modelhub.api.asgi import API_PATH_PREFIXES, ApiHandler  # noqa: E402  (needs apps ready)
from modelhub.providers.registry import adapter_classes_preload  # noqa: E402

api = ApiHandler()


def preload() -> None:
    """Build the routing snapshot and import what the first request needs (the URLconf,
    the SDKs that enabled routes can call; the others, 25-55 MB each, only if a route comes
    to need them) now, off the event loop, rather than during that request; then move everything
    loaded so far out of the garbage collector's way: it lives as long as the process, and
    a full collection would otherwise scan it again and again under load."""
    from django.db import connections
    from django.urls import get_resolver

    from modelhub.runtime import runtime

    try:
        get_resolver().check()  # loads the URLconf: the views, DRF, the serializers
        sockets()  # and the websocket consumers
        adapter_classes_preload(kinds=runtime().routing.current_sync().provider_kinds_in_use())
    except Exception as exc:  # noqa: BLE001 - no database yet: the first call imports its SDK
        logging.getLogger("modelhub").warning("SDK preload skipped: %s", exc)
    finally:
        connections.close_all()  # this thread's own connection
    gc.freeze()


def sockets():
    """The websocket application, imported on first use (by the preload thread as a rule)
    rather than with this module: it pulls in the chat views, ~0.3 s before uvicorn could listen."""
    from modelhub.ws.routing import application

    return application


# Started once everything it calls is defined.
threading.Thread(target=preload, name="modelhub-preload", daemon=True).start()


QUERY_KEYS = ("api_key", "token")  # the websocket's key on its URL (token: the PAM hybrid document's name)


def key_from_query(scope: dict) -> None:
    """Move an API key given on a websocket's URL out of its query string, into
    ``scope["modelhub_query_key"]``, before the server logs the handshake: uvicorn logs
    each one with its whole query, and a secret must never reach a log."""
    query = scope.get("query_string", b"")
    if b"api_key=" not in query and b"token=" not in query:
        return
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    given = {name: value for name, value in reversed(pairs) if name in QUERY_KEYS}  # the first of each
    scope["query_string"] = urlencode([(k, v) for k, v in pairs if k not in QUERY_KEYS]).encode("latin-1")
    scope["modelhub_query_key"] = given.get("api_key") or given.get("token")


def startup_check() -> str | None:
    """The override check's message when the server must not start (None: it may)."""
    from django.db import connections

    from modelhub.checks import startup_refusal

    try:
        return startup_refusal(process="web server")
    finally:
        connections.close_all()  # this thread's own connection


def ledger_step(step: str) -> None:
    """Run the ledger's ``sweep`` (at start-up: store the spooled rows of processes that
    died) or ``flush`` (at shut-down: store what is queued) on this thread. Best effort: a
    failure leaves the rows spooled for the next sweep, which every writer thread runs."""
    from django.db import connections

    from modelhub.runtime import runtime

    try:
        getattr(runtime().ledger, step)()
    except Exception as exc:  # noqa: BLE001 - the rows stay spooled; they are stored later
        logging.getLogger("modelhub").warning("ledger %s failed: %s", step, exc)
    finally:
        connections.close_all()


async def lifespan(receive, send) -> None:
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            refusal = await sync_to_async(startup_check, thread_sensitive=False)()
            if refusal is not None:
                await send({"type": "lifespan.startup.failed", "message": refusal})
                return
            await sync_to_async(ledger_step, thread_sensitive=False)("sweep")
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await sync_to_async(ledger_step, thread_sensitive=False)("flush")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if scope["type"] == "http" and scope["path"].startswith(API_PATH_PREFIXES):
        return await api(scope, receive, send)
    if scope["type"] == "websocket":
        key_from_query(scope)
        return await sockets()(scope, receive, send)
    return await web(scope, receive, send)

"""A client of the hub's ASGI application (``pam.asgi``: its API handler, the DRF views),
called in-process: each request runs on a fresh event loop (``async_to_sync``), whose sync
work (the configuration reads) runs in the calling test's thread and transaction, so a test
needs no committed rows and no database flush. As Django's test client does, it keeps the
request signals from closing that connection. The client may hang up at a chosen moment
(``http.disconnect``), as a socket's close reaches an ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from asgiref.sync import async_to_sync
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from modelhub.runtime import runtime

Sent = list[dict]  # the ASGI messages the application has sent so far


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: dict | None  # a JSON answer
    events: list  # a stream's events: each data decoded, or "[DONE]"
    waited: bool = False  # whether ``until`` held before the request's loop closed

    @property
    def request_id(self) -> str:
        return self.headers["x-request-id"]

    @property
    def attempts(self) -> int:
        return int(self.headers["x-modelhub-attempts"])

    @property
    def chunks(self) -> list[dict]:
        return [e for e in self.events if isinstance(e, dict) and "choices" in e]

    @property
    def content(self) -> str:
        return "".join(c["choices"][0]["delta"].get("content", "") for c in self.chunks if c["choices"])


def hub_post(
    path: str,
    body: dict,
    *,
    key: str,
    leave: Callable[[Sent], bool] | None = None,
    slow_start: float = 0.0,
    until: Callable[[], bool] | None = None,
) -> Reply:
    """POST ``body`` to ``path``. ``leave(sent)``: the client hangs up once it holds;
    ``slow_start``: seconds the answer's start takes to be written (the client may leave
    meanwhile); ``until``: waited for (5 s at most) once the application has returned,
    while its loop and connections still live."""
    with _connection_kept():
        return async_to_sync(_post)(path, orjson.dumps(body), key, leave, slow_start, until)


@contextlib.contextmanager
def _connection_kept():
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        yield
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)


async def _post(path, raw: bytes, key: str, leave, slow_start: float, until) -> Reply:
    from pam.asgi import application

    sent: Sent = []
    request = [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive():
        if request:
            return request.pop()
        while leave is None or not leave(sent):  # without ``leave``: until the app cancels this
            await asyncio.sleep(0.005)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.start" and slow_start:
            await asyncio.sleep(slow_start)

    try:
        await application(_scope(path, raw, key), receive, send)
        waited = until is not None and await asyncio.to_thread(_eventually, until)
    finally:
        await runtime().adapters.close()
    return _reply(sent, waited)


def _eventually(condition: Callable[[], object], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _scope(path: str, raw: bytes, key: str) -> dict:
    headers = {
        "host": "127.0.0.1",
        "authorization": f"Bearer {key}",
        "content-type": "application/json",
        "content-length": str(len(raw)),
    }
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def _reply(sent: Sent, waited: bool) -> Reply:
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    if start is None:  # the client left before the answer began
        return Reply(0, {}, None, [], waited)
    headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    raw = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if headers.get("content-type", "").startswith("text/event-stream"):
        return Reply(start["status"], headers, None, _events(raw), waited)
    return Reply(start["status"], headers, orjson.loads(raw) if raw else None, [], waited)


def _events(raw: bytes) -> list:
    events = []
    for block in raw.decode().strip().split("\n\n"):
        if block:
            data = block.removeprefix("data: ")
            events.append(data if data == "[DONE]" else orjson.loads(data))
    return events

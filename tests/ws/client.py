"""A websocket client for the tests: the ``websockets`` library's own (sync) client."""

from __future__ import annotations

from contextlib import ExitStack

import orjson
from websockets.sync.client import connect


class Socket:
    def __init__(self, server, path: str, **headers):
        url = server.url.replace("http://", "ws://") + path
        self._open = ExitStack()
        self.ws = self._open.enter_context(connect(url, open_timeout=5, proxy=None, additional_headers=headers or None))

    def send(self, **message) -> None:
        self.ws.send(orjson.dumps(message).decode())

    def send_raw(self, data) -> None:
        self.ws.send(data)

    def event(self) -> dict:
        return orjson.loads(self.ws.recv(timeout=10))

    def until(self, *types: str) -> list[dict]:
        """Events up to and including the first of one of ``types``."""
        events = [self.event()]
        while events[-1]["type"] not in types:
            events.append(self.event())
        return events

    def chat(self, message: str, **fields) -> list[dict]:
        """A chat message's events: deltas, then done or error."""
        self.send(type="chat", message=message, **fields)
        return self.until("done", "error")

    def close(self) -> None:
        self._open.close()

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def text_of(events: list[dict]) -> str:
    return "".join(e.get("content", "") for e in events if e["type"] == "delta")

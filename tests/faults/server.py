"""The fault server: a raw asyncio HTTP/1.1 server (a real HTTP framework would not let a
handler reset a connection before its headers, drip bytes or never end a body). It reads
one request per connection, names its wire format, model and whether it streams, and lets
the injected handler answer it byte by byte. A body without a length is sent chunked, as
the providers send their streams, so that a cut is visible on the wire. Every answer
closes its connection: the stale keep-alive case is not this server's."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

from modelhub.simulator.anthropic_wire import ANTHROPIC
from modelhub.simulator.gemini_wire import ACTIONS, GEMINI
from modelhub.simulator.openai_wire import OPENAI
from modelhub.simulator.reply import Reply, make_reply

BASE_PATHS = {"anthropic": "/anthropic", "openai": "/openai/v1", "google": "/gemini"}
CHAT_PATHS = {"/anthropic/v1/messages": ("anthropic", ANTHROPIC), "/openai/v1/chat/completions": ("openai", OPENAI)}
JSON = b"application/json"
SSE = b"text/event-stream"

Handler = Callable[["Exchange"], Awaitable[None]]


class Gone(Exception):
    """The hub closed the connection while the handler was still answering."""


@dataclass
class Call:
    """One request the server received, and whether the hub left before its answer ended."""

    kind: str
    model: str
    stream: bool
    gone: threading.Event = field(default_factory=threading.Event)


class Exchange:
    """One request and the means to answer it: whole, in parts, slowly, or not at all.
    ``after`` is how many content chunks a stream sends before its fault strikes."""

    def __init__(self, reader, writer, wire, call: Call, body: dict, after: int):
        self.reader, self.writer, self.wire, self.call, self.body = reader, writer, wire, call, body
        self.after = after
        self.chunked = False
        self.reply: Reply = make_reply(wire.parse(body, call.model, call.stream))

    @property
    def stream(self) -> bool:
        return self.call.stream

    def completion(self) -> bytes:
        return self.wire.completion(self.reply)

    def stream_parts(self) -> tuple[bytes, list[bytes], bytes]:
        """(what comes before the fault: the prelude and ``after`` content chunks, the
        content chunks left, the tail)."""
        prelude, content, tail = self.wire.stream(self.reply, self.body)
        return b"".join(prelude + content[: self.after]), content[self.after :], b"".join(tail)

    def head(self, status: int = 200, *, content_type: bytes = JSON, length: int | None = None, extra=()) -> None:
        """The status line and headers; without ``length`` the body goes chunked."""
        self.chunked = length is None
        framing = b"transfer-encoding: chunked" if self.chunked else f"content-length: {length}".encode()
        lines = [f"HTTP/1.1 {status} Fault".encode(), b"content-type: " + content_type, framing]
        lines += [name + b": " + value for name, value in extra]
        self.writer.write(b"\r\n".join([*lines, b"connection: close", b"", b""]))

    async def send(self, data: bytes) -> None:
        if not data:
            return
        if self.writer.is_closing():
            raise Gone
        self.writer.write(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data)
        try:
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise Gone from exc

    def end(self) -> None:
        """The body's end as its framing says it (the last chunk); the connection closes."""
        if self.chunked and not self.writer.is_closing():
            self.writer.write(b"0\r\n\r\n")

    async def respond(self, status: int, body: bytes, *, content_type: bytes = JSON, extra=()) -> None:
        self.head(status, content_type=content_type, length=len(body), extra=extra)
        await self.send(body)

    async def answer(self) -> None:
        """The whole, healthy answer."""
        if not self.stream:
            return await self.respond(200, self.completion())
        before, content, tail = self.stream_parts()
        self.head(content_type=SSE)
        await self.send(before + b"".join(content) + tail)

    def reset(self) -> None:
        """Drop the connection with a TCP reset (SO_LINGER 0), not a clean close."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def wait_gone(self) -> None:
        """Hold the call open until the hub closes the connection."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass
        raise Gone


class FaultServer:
    """Serves on a loopback port from its own thread and event loop; ``inject`` chooses
    how the next calls are answered."""

    def __init__(self):
        self.port = 0
        self.calls: list[Call] = []
        self._handler: Handler | None = None
        self._after = 0
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None

    def base_url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.port}{BASE_PATHS[kind]}"

    @staticmethod
    def refusing_url(kind: str) -> str:
        """A base URL where nothing listens: a port just bound and released."""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            port = listener.getsockname()[1]
        return f"http://127.0.0.1:{port}{BASE_PATHS[kind]}"

    def inject(self, handler: Handler, *, after: int = 0) -> None:
        self._handler, self._after = handler, after

    def reset(self) -> None:
        self._handler, self._after = None, 0
        self.calls.clear()

    def start(self) -> None:
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name="fault-server", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the fault server did not start")

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        self._loop.run_forever()
        server.close()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            exchange = await self._exchange(reader, writer)
            await self._answer(exchange)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()

    async def _answer(self, exchange: Exchange) -> None:
        try:
            await (self._handler or Exchange.answer)(exchange)
        except Gone:
            exchange.call.gone.set()
        else:
            exchange.end()

    async def _exchange(self, reader, writer) -> Exchange:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in header_lines if ": " in line)
        body_bytes = await reader.readexactly(int(headers.get("content-length", 0)))
        body = orjson.loads(body_bytes) if body_bytes else {}
        path = request_line.split(" ")[1].split("?")[0]
        kind, wire, model, stream = _route(path, body)
        call = Call(kind, model, stream)
        self.calls.append(call)
        return Exchange(reader, writer, wire, call, body, self._after)


def _route(path: str, body: dict):
    """(kind, wire, model, streamed) of a chat call by its path."""
    if path in CHAT_PATHS:
        kind, wire = CHAT_PATHS[path]
        return kind, wire, body.get("model", ""), bool(body.get("stream"))
    model, _, action = path.rsplit("/", 1)[-1].rpartition(":")
    return "google", GEMINI, model, ACTIONS[action]

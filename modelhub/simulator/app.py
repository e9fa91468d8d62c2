"""The simulated upstream: fault and call-log state plus the raw ASGI app serving every wire format."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter, deque
from dataclasses import dataclass

from . import control
from .anthropic_wire import ANTHROPIC
from .asgi import lifespan, parse_json, read_body, send_body, send_chunk, start_stream
from .gemini_wire import ACTIONS, GEMINI, VERSIONS
from .openai_wire import COMPAT, OPENAI
from .pace import Pace, send_paced
from .reply import Request, make_reply

DEFAULT_MODELS = {
    "anthropic": [
        "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5-20250514",
        "claude-3-5-haiku-20241022",
        "claude-3-7-sonnet-20250219",
        "claude-opus-4-20250514",
    ],
    "openai": ["gpt-4o", "gpt-4o-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano"],
    "gemini": [
        "gemini-1.5-flash-latest",
        "gemini-1.5-pro-latest",
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
    ],
    "compat": ["llama-3.1-8b-instant", "llama-3.3-70b-versatile", "llama-3.1-70b-versatile", "mixtral-8x7b-32768"],
}
MAX_CALLS = 100_000  # benchmarks send millions of calls; keep only the newest
CHAT_PATHS = {
    "/openai/v1/chat/completions": OPENAI,
    "/compat/v1/chat/completions": COMPAT,
    "/anthropic/v1/messages": ANTHROPIC,
}
MODEL_PATHS = {"/openai/v1/models": OPENAI, "/compat/v1/models": COMPAT, "/anthropic/v1/models": ANTHROPIC}
ERRORS = ("context_length",)
NUMERIC_FIELDS = ("retry_after", "latency_ms", "cut_after_chunks", "error_event_after_chunks", "times", "rate")


@dataclass
class Fault:
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    latency_ms: int = 0
    hang: bool = False
    malformed: bool = False
    cut_after_chunks: int | None = None
    error_event_after_chunks: int | None = None
    times: int | None = None
    rate: float | None = None  # the share of calls it hits, at random (None: every call)

    def __post_init__(self):
        if self.status is not None and not (isinstance(self.status, int) and 400 <= self.status <= 599):
            raise ValueError(f"fault status must be an HTTP error status 400-599, not {self.status!r}")
        if self.error is not None and self.error not in ERRORS:
            raise ValueError(f"unknown fault error {self.error!r}; known: {', '.join(ERRORS)}")
        for name in NUMERIC_FIELDS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"fault {name} must be a number, not {value!r}")
        if self.times is not None and self.times < 1:
            raise ValueError("fault times must be at least 1")
        if self.rate is not None and not 0 < self.rate <= 1:
            raise ValueError("fault rate must be above 0 and at most 1")

    def hits(self) -> bool:
        """Whether this call is one the fault hits."""
        return self.rate is None or random.random() < self.rate


@dataclass(slots=True)
class Call:
    provider: str
    model: str
    stream: bool
    status: int  # 0 while unanswered (e.g. a hang)
    body: dict
    api_key: str | None
    path: str


class Simulator:
    """Shared state of the simulated upstream; ``app`` is its ASGI callable."""

    def __init__(self):
        self._lock = threading.Lock()
        self._faults: dict[str, list] = {}  # model (or "*") -> [Fault, calls left or None]
        self._paces: dict[str, Pace] = {}  # model (or "*") -> Pace
        self._calls: deque[Call] = deque(maxlen=MAX_CALLS)
        self._statuses: Counter[int] = Counter()  # every call since the last reset, by status
        self._hangs: set[asyncio.Future] = set()
        self.valid_keys: set[str] | None = None
        self.default_latency_ms = 0
        self.listed_models = {provider: list(ids) for provider, ids in DEFAULT_MODELS.items()}
        self.app = self._make_app()

    # -- faults and call log (called from any thread) --

    def set_fault(self, model: str, fault: Fault | None = None, **fields) -> Fault:
        """Fault every call of ``model`` (``"*"``: every model without its own fault)."""
        if fault is None:
            fault = Fault(**fields)
        elif fields:
            raise TypeError("pass a Fault or keyword fields, not both")
        with self._lock:
            self._faults = {**self._faults, model: [fault, fault.times]}
        return fault

    def clear_faults(self, model: str | None = None) -> None:
        with self._lock:
            self._faults = {} if model is None else {m: s for m, s in self._faults.items() if m != model}

    @property
    def faults(self) -> dict[str, Fault]:
        return {model: slot[0] for model, slot in self._faults.items()}

    def take_fault(self, model: str) -> Fault | None:
        """The fault for this call, counting it against the fault's ``times``."""
        if not self._faults:
            return None
        with self._lock:
            key = model if model in self._faults else "*"
            slot = self._faults.get(key)
            if slot is not None and not slot[0].hits():
                return None
            if slot is None or slot[1] is None:
                return slot and slot[0]
            slot[1] -= 1
            if slot[1] <= 0:
                self._faults = {m: s for m, s in self._faults.items() if m != key}
            return slot[0]

    def set_pace(self, model: str, pace: Pace | None = None, **fields) -> Pace:
        """Stream ``model``'s answers paced (``"*"``: every model without its own pace)."""
        if pace is None:
            pace = Pace(**fields)
        elif fields:
            raise TypeError("pass a Pace or keyword fields, not both")
        with self._lock:
            self._paces = {**self._paces, model: pace}
        return pace

    def clear_paces(self, model: str | None = None) -> None:
        with self._lock:
            self._paces = {} if model is None else {m: p for m, p in self._paces.items() if m != model}

    @property
    def paces(self) -> dict[str, Pace]:
        return dict(self._paces)

    def pace_for(self, model: str) -> Pace | None:
        paces = self._paces
        return paces.get(model) or paces.get("*")

    @property
    def statuses(self) -> dict[int, int]:
        """How many calls were answered with each status since the last reset (0: unanswered,
        e.g. a hang the client left); unlike ``calls``, never trimmed."""
        with self._lock:
            return dict(self._statuses)

    def reset(self) -> None:
        """Forget faults, paces, calls and key checks, and list the default models again."""
        with self._lock:
            self._faults = {}
            self._paces = {}
            self._calls.clear()
            self._statuses.clear()
        self.valid_keys = None
        self.listed_models = {provider: list(ids) for provider, ids in DEFAULT_MODELS.items()}

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_for(self, model: str) -> list[Call]:
        return [call for call in self.calls if call.model == model]

    def release_hangs(self) -> None:
        """Answer every hanging request now (so that a server can shut down)."""
        with self._lock:
            hangs = list(self._hangs)
        for released in hangs:
            try:
                released.get_loop().call_soon_threadsafe(_resolve, released)
            except RuntimeError:  # its loop is already closed
                pass

    # -- ASGI --

    def _make_app(self):
        # A plain coroutine function, so that servers detect ASGI 3 (a bound method is not detected).
        async def app(scope, receive, send) -> None:
            if scope["type"] == "http":
                await self._dispatch(scope, receive, send)
            elif scope["type"] == "lifespan":
                await lifespan(receive, send)

        return app

    async def _dispatch(self, scope, receive, send) -> None:
        path, method = scope["path"], scope["method"]
        if method == "POST" and path in CHAT_PATHS:
            await self._generate(CHAT_PATHS[path], scope, receive, send)
        elif method == "GET" and path in MODEL_PATHS:
            await self._list_models(MODEL_PATHS[path], scope, receive, send)
        elif path.startswith("/gemini/"):
            await self._gemini(scope, receive, send)
        elif path.startswith("/_sim/"):
            await control.handle(self, scope, receive, send)
        else:
            await self._not_found(scope, receive, send)

    async def _gemini(self, scope, receive, send) -> None:
        parts = scope["path"].split("/", 4)  # "", "gemini", version, "models", "{model}:{action}"
        if len(parts) < 4 or parts[2] not in VERSIONS or parts[3] != "models":
            return await self._not_found(scope, receive, send)
        if len(parts) == 4 and scope["method"] == "GET":
            return await self._list_models(GEMINI, scope, receive, send)
        model, _, action = parts[-1].rpartition(":")
        if len(parts) == 5 and model and action in ACTIONS and scope["method"] == "POST":
            return await self._generate(GEMINI, scope, receive, send, model.removeprefix("models/"), ACTIONS[action])
        await self._not_found(scope, receive, send)

    async def _not_found(self, scope, receive, send) -> None:
        await read_body(receive)
        wire = {"openai": OPENAI, "compat": COMPAT, "anthropic": ANTHROPIC, "gemini": GEMINI}.get(
            scope["path"].split("/")[1]
        )
        if wire is None:
            return await control.send_not_found(scope, send)
        await send_body(send, 404, wire.error(404, f"Unknown path {scope['path']}"))

    async def _list_models(self, wire, scope, receive, send) -> None:
        await read_body(receive)
        if not self._key_accepted(wire.api_key(scope)):
            return await send_body(send, 401, wire.error(401))
        await send_body(send, 200, wire.models(self.listed_models.get(wire.name, [])))

    def _key_accepted(self, key: str | None) -> bool:
        valid = self.valid_keys
        return bool(key) and (valid is None or key in valid)

    # -- one generation call --

    async def _generate(self, wire, scope, receive, send, model=None, stream=False) -> None:
        body = parse_json(await read_body(receive))
        request = wire.parse(body, model, stream)
        call = Call(
            wire.name,
            request.model,
            request.stream,
            0,
            body if isinstance(body, dict) else {},
            wire.api_key(scope),
            scope["path"],
        )
        with self._lock:
            self._calls.append(call)
        try:
            await self._answer(wire, request, call, body, receive, send)
        finally:
            with self._lock:
                self._statuses[call.status] += 1

    async def _answer(self, wire, request: Request, call: Call, body, receive, send) -> None:
        if not self._key_accepted(call.api_key):
            return await _fail(send, call, wire, 401)
        if request.problem:
            return await _fail(send, call, wire, 400, request.problem)
        fault = self.take_fault(request.model)
        latency = fault.latency_ms if fault and fault.latency_ms else self.default_latency_ms
        if latency:
            await asyncio.sleep(latency / 1000)
        if fault is None or not await self._apply_fault(fault, wire, request, call, receive, send):
            await _succeed(wire, request, call, body, fault, self.pace_for(request.model), send)

    async def _apply_fault(self, fault: Fault, wire, request: Request, call: Call, receive, send) -> bool:
        """Answer the call as the fault says; False when it still gets a (maybe streamed) success."""
        if fault.hang:
            if await self._hang(receive):
                await _fail(send, call, wire, 503, "The simulated upstream is shutting down.")
        elif fault.error == "context_length":
            call.status = 400
            await send_body(send, 400, wire.context_error(request.input_tokens))
        elif fault.status:
            await _fail(send, call, wire, fault.status, retry_after=fault.retry_after)
        elif fault.malformed:
            await _malformed(wire, request, call, send)
        else:
            return False
        return True

    async def _hang(self, receive) -> bool:
        """Wait until the client leaves (False) or the hang is released (True)."""
        released = asyncio.get_running_loop().create_future()
        with self._lock:
            self._hangs.add(released)
        client_gone = asyncio.ensure_future(receive())  # resolves to http.disconnect
        try:
            await asyncio.wait((released, client_gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            with self._lock:
                self._hangs.discard(released)
            client_gone.cancel()
        return released.done()


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


async def _fail(send, call: Call, wire, status: int, message=None, retry_after=None) -> None:
    call.status = status
    extra = [(b"retry-after", f"{retry_after:g}".encode())] if retry_after is not None else []
    await send_body(send, status, wire.error(status, message), extra=extra)


async def _malformed(wire, request: Request, call: Call, send) -> None:
    call.status = 200
    if not request.stream:
        return await send_body(send, 200, b'{"id": "sim-malformed", "choices": [')
    await start_stream(send)
    await send_chunk(send, wire.garbage_event, more=False)


async def _succeed(wire, request: Request, call: Call, body: dict, fault: Fault | None, pace: Pace | None, send):
    reply = make_reply(request, pace.chunks if pace else None)
    interval = pace.interval if pace else 0.0
    call.status = 200
    if not request.stream:
        if interval:  # a paced model takes its generation time
            await asyncio.sleep(interval * len(reply.chunks))
        return await send_body(send, 200, wire.completion(reply))
    prelude, content, tail = wire.stream(reply, body)
    cut = fault.cut_after_chunks if fault else None
    broken = fault.error_event_after_chunks if fault else None
    if cut is not None:
        content, tail = content[:cut], []
    elif broken is not None:
        content, tail = content[:broken], [wire.stream_error_event]
    more = cut is not None  # returning with more_body set makes the server drop the connection
    await start_stream(send)
    if not interval:
        return await send_chunk(send, b"".join(prelude + content + tail), more)
    await send_paced(send, (prelude, content, tail), interval, more)

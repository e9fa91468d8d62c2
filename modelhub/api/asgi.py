import asyncio
import ctypes
import gc
import os
from contextlib import aclosing

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix

from ..observability.events import inflight_changed, overload_reported
from .errors import NATIVE, OPENAI, ApiError, error_body
from .gcpause import GcPause

# Served without middleware; every view under them authenticates by API key, but /metrics,
# which its own rule guards (a token or an allowed network).
API_PATH_PREFIXES = ("/api/v1/pam/chat", "/v1/", "/metrics")
# What the in-flight limit counts: the requests that hold an upstream call (and a stream) open.
CHAT_PATHS = {"/api/v1/pam/chat": NATIVE, "/v1/chat/completions": OPENAI}
RETRY_AFTER_SECONDS = 1  # about one paced answer: by then some in flight have ended
# After a load of at least this many chat requests at once, once none has been in flight for
# this long, freed memory goes back to the OS (bench/README.md, "Memory").
TRIM_AFTER_PEAK = 100
TRIM_IDLE_SECONDS = 5.0


class ApiHandler(ASGIHandler):
    """Django's ASGI handler with an empty middleware chain, and without a per-request
    thread-sensitive context: that context starts and joins a fresh thread for every request
    whose signals touch sync code (request_started's close_old_connections does), about a
    tenth of a chat request's CPU. These views do their rare sync work (a configuration
    reload) on asgiref's one shared sync thread instead.

    It also bounds the chat requests this process answers at once (``MAX_INFLIGHT``, 0 = no
    bound): past it a chat request is refused at once with 503 and Retry-After, before any
    work, so an overload costs the refused client one round trip instead of slowing every
    stream in flight until all of them miss their deadlines (the metrics count both:
    ``modelhub_inflight_requests``, ``modelhub_overloaded_total``). And once a load has passed
    (nothing in flight for a few seconds after at least ``TRIM_AFTER_PEAK`` at once), it gives
    the memory freed since back to the OS, which glibc otherwise keeps."""

    def __init__(self):
        super().__init__()
        self.inflight = 0  # one event loop per process: a plain counter is exact
        self.peak = 0  # most in flight since the last memory trim
        self._trim: asyncio.TimerHandle | None = None
        self._resolved: dict[str, object] = {}  # chat path -> its ResolverMatch
        self.gc_pause = GcPause(settings.MODELHUB["GC_PAUSE_INFLIGHT"])

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)

    async def __call__(self, scope, receive, send):
        error_format = CHAT_PATHS.get(scope["path"]) if scope["method"] == "POST" else None
        if error_format is None:
            return await self.handle(scope, receive, send)
        limit = settings.MODELHUB["MAX_INFLIGHT"]
        if limit and self.inflight >= limit:
            overload_reported()
            return await overloaded(send, limit, error_format)
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        inflight_changed(1)
        try:
            self.gc_pause.admitted(self.inflight)
            await self.chat_handle(scope, receive, send)
        finally:
            self.inflight -= 1
            self.gc_pause.ended(self.inflight)
            inflight_changed(-1)
            if not self.inflight and self.peak >= TRIM_AFTER_PEAK:
                self._trim_when_idle()

    async def chat_handle(self, scope, receive, send):
        """Django's ``handle`` for the chat endpoints, less its two thread hops a request:
        ``request_started`` and ``request_finished`` run their sync receivers (Django's
        ``close_old_connections``, ``reset_queries``) through ``sync_to_async``. A chat
        request does no database work of its own; the rare work it causes (a configuration
        reload, a conversation) closes old connections itself (``modelhub.dbwork``). A streamed
        answer is ended on the loop (``EventStreamResponse``) instead of in a thread."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        async def process_request():
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client left while the answer was sent
            return response

        try:
            listener = asyncio.create_task(self.listen_for_disconnect(receive))
            processor = asyncio.create_task(process_request())
            await asyncio.wait((listener, processor), return_when=asyncio.FIRST_COMPLETED)
            for task in (listener, processor):  # as Django: the listener first, then the view
                if task.done():
                    if not task.cancelled():
                        task.result()  # raises what Django would raise (an invalid ASGI message)
                    continue
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        finally:
            body_file.close()
        if not processor.cancelled():
            await response_end(processor.result())

    async def send_response(self, response, send):
        """Django's, but a streamed answer's events go to the server as the chat stream
        yields them: not through ``StreamingHttpResponse``'s two wrapping generators and its
        chunking, three layers resumed for every relayed chunk."""
        from .views import EventStreamResponse

        if not isinstance(response, EventStreamResponse):
            return await super().send_response(response, send)
        headers = [(name.encode("ascii"), value.encode("latin-1")) for name, value in response.items()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        async with aclosing(response.events.__aiter__()) as events:
            async for part in events:
                await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body"})

    def resolve_request(self, request):
        """The chat paths' URL match, resolved once (they take no arguments)."""
        match = self._resolved.get(request.path_info)
        if match is None:
            match = super().resolve_request(request)
            if request.path_info in CHAT_PATHS:
                self._resolved[request.path_info] = match
        request.resolver_match = match
        return match

    def _trim_when_idle(self) -> None:
        if self._trim is not None:
            self._trim.cancel()
        self._trim = asyncio.get_running_loop().call_later(TRIM_IDLE_SECONDS, self._memory_trim)

    def _memory_trim(self) -> None:
        """Still idle: collect (a full collection also empties the free lists of tuples,
        floats, ...), then let the C allocator give its freed pages back off the loop."""
        self._trim = None
        if self.inflight:
            return
        self.peak = 0
        gc.collect()
        asyncio.get_running_loop().run_in_executor(None, memory_release)

    async def listen_for_disconnect(self, receive):
        """Django's, returning where it raises RequestAborted: the handler treats both
        alike (the response task is cancelled if it is still running), and the exception
        would tie its task, traceback and frames into a cycle left for the garbage
        collector, on every request (the ASGI server reports a disconnect after each
        response)."""
        message = await receive()
        if message["type"] != "http.disconnect":
            raise AssertionError(f"Invalid ASGI message after request body: {message['type']}")


async def response_end(response) -> None:
    """What Django's ``response.close()`` does for a chat response, but its signal: a
    streamed answer is ended on the loop; anything else with resources is closed as Django
    closes it."""
    from .views import EventStreamResponse

    if isinstance(response, EventStreamResponse):
        await response.events.aclose()
    elif response._resource_closers:
        await sync_to_async(response.close)()


def _malloc_trim():
    """glibc's malloc_trim, or None elsewhere (musl, macOS)."""
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own symbols: libc's on Linux
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def memory_release() -> None:
    """Return the C heap's free pages to the OS. What CPython's own allocator keeps (its
    arenas, while any object in them lives) stays: the process's high-water mark."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


async def overloaded(send, limit: int, error_format: str) -> None:
    """503 in the endpoint's error shape; the unread request body is dropped by the server."""
    request_id = os.urandom(16).hex()
    error = ApiError(
        503,
        "overloaded",
        f"The hub is answering its limit of {limit} chat requests; retry in {RETRY_AFTER_SECONDS} s.",
    )
    body = orjson.dumps(error_body(error, error_format=error_format, request_id=request_id))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})

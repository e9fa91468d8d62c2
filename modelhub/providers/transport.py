"""Outbound HTTP below the SDKs and the alert webhooks: the aiohttp sessions they all use.

Two promises are kept here, once for every client:

- **SSRF closed at connect time.** Hosts are looked up through ``GuardedResolver``, which
  applies the base-URL rules (public addresses only, unless private ones are allowed or the
  host is allowlisted) to the answer a connection is actually made with. A name that passed
  the admin's check and later resolves to a private address (DNS rebinding) is refused with
  ``PrivateAddressRefused``, which the adapters report as a ``connection`` error. IP literals
  never reach a resolver; they cannot be rebound and are checked when saved.
- **Stale keep-alive connections.** A request written on a pooled connection that the upstream
  had already closed is sent once more, on a new connection (``stale_connection_retry``), so
  load that makes an upstream drop idle connections does not take a healthy model out of service.
- **Bounded answers.** No response body may pass ``MODELHUB_MAX_RESPONSE_BYTES``
  (``response_cap``): an upstream that never ends its body, plain or streamed, is cut with
  ``ResponseTooLarge``, which every adapter reports as a ``server`` error.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import weakref
from contextvars import ContextVar

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client import IDEMPOTENT_METHODS
from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils.module_loading import import_string

from .errors import ResponseTooLarge

log = logging.getLogger("modelhub.transport")

# How a request written on a connection the upstream had closed fails before any answer:
# the write finds the transport closing, or the read finds the socket shut or reset.
STALE_CONNECTION_ERRORS = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ClientConnectionResetError,
)


class PrivateAddressRefused(ConnectionRefusedError):
    """A host resolved to a private, loopback or reserved address where only public ones may
    be reached. A ConnectionError, so every adapter reports it as a ``connection`` failure."""

    def __str__(self) -> str:
        return str(self.strerror)


def address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def host_is_trusted(host: str) -> bool:
    """Private addresses are allowed (the embedded default), or the host is allowlisted
    (a self-hosted endpoint such as Ollama or vLLM)."""
    config = settings.MODELHUB
    if config["ALLOW_PRIVATE_BASE_URLS"]:
        return True
    return host.lower() in {name.lower() for name in config["BASE_URL_ALLOWLIST"]}


class GuardedResolver(AbstractResolver):
    """Looks hosts up through the configured resolver (``MODELHUB_DNS_RESOLVER``, aiohttp's
    default) and refuses an answer with any private address for a host that is not trusted.
    aiohttp asks it for every new connection and caches only answers it let through."""

    def __init__(self, resolver: AbstractResolver | None = None):
        self._resolver = resolver or import_string(settings.MODELHUB["DNS_RESOLVER"])()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._resolver.resolve(host, port, family)
        if host_is_trusted(host):
            return answers
        private = next((answer["host"] for answer in answers if not address_is_public(answer["host"])), None)
        if private is not None:
            raise PrivateAddressRefused(
                errno.ECONNREFUSED, f"{host} resolves to {private}, a private, loopback or reserved address"
            )
        return answers

    async def close(self) -> None:
        await self._resolver.close()


def host_check(*, host: str, port: int) -> None:
    """Look ``host`` up now, as a connection would, and raise PrivateAddressRefused for a
    private answer or OSError when it does not resolve (the check when a URL is saved)."""
    async_to_sync(_host_check)(host, port)


async def _host_check(host: str, port: int) -> None:
    resolver = GuardedResolver()
    try:
        await resolver.resolve(host, port, socket.AF_UNSPEC)
    finally:
        await resolver.close()


class _Attempt:
    """What the request being sent learnt about its connection (``reused``), and whether it
    must have a new one (``fresh``: the retry, since every idle connection in the pool may
    have been closed by the same upstream at the same moment)."""

    __slots__ = ("reused", "fresh")

    def __init__(self, *, fresh: bool = False):
        self.reused, self.fresh = False, fresh


_ATTEMPT: ContextVar[_Attempt | None] = ContextVar("modelhub_transport_attempt", default=None)


class _PoolTellingConnector(aiohttp.TCPConnector):
    """Tells the request being sent (``_ATTEMPT``) whether its connection has served an
    earlier request, i.e. came from the pool: only such a connection can have been closed by
    the upstream while it sat idle. (Cheaper than a TraceConfig, which sends every trace
    signal of every request.)"""

    def __init__(self, **options):
        super().__init__(**options)
        self._served: weakref.WeakSet = weakref.WeakSet()

    async def connect(self, req, traces, timeout):
        connection = await super().connect(req, traces, timeout)
        attempt = _ATTEMPT.get()
        if attempt is not None:
            attempt.reused = connection.protocol in self._served
        self._served.add(connection.protocol)
        return connection

    async def _get(self, key, traces):
        """A pooled connection, unless the request must have a new one (aiohttp 3.14's pool
        lookup; ``connect`` opens a new connection when it finds none)."""
        attempt = _ATTEMPT.get()
        if attempt is not None and attempt.fresh:
            return None
        return await super()._get(key, traces)


async def stale_connection_retry(request: aiohttp.ClientRequest, handler) -> aiohttp.ClientResponse:
    """Send a request once more when the pooled keep-alive connection it was written on turns
    out closed by the upstream before any byte of the answer: the write found the transport
    closing, or the upstream shut or reset the connection without answering, as a server
    closing an idle connection does when a request crosses its close (RFC 9112 9.3.1).

    Never retried: a failure on a new connection (the upstream took the request and failed),
    timeouts (the upstream may be working on it), anything after the response began (a
    stream's later failure), a body that cannot be sent again, a second time. aiohttp retries
    idempotent methods this way itself. The remaining risk, an upstream that read the request
    and then dropped the reused connection without a byte, is the resend failover would make
    anyway, and a chat call has no effect upstream but its cost."""
    if request.method in IDEMPOTENT_METHODS:
        return await handler(request)
    attempt = _Attempt()
    token = _ATTEMPT.set(attempt)
    try:
        return await handler(request)
    except STALE_CONNECTION_ERRORS as exc:
        if not attempt.reused or getattr(request.body, "consumed", False):
            raise
        where = request.url.with_query(None)  # never a query string in a log line
        log.info("%s %s: pooled connection closed by the upstream (%r), sending again", request.method, where, exc)
    finally:
        _ATTEMPT.reset(token)
    await request.close()  # let the failed attempt's body writer settle first
    token = _ATTEMPT.set(_Attempt(fresh=True))  # not another pooled one: it may be as stale
    try:
        return await handler(request)
    finally:
        _ATTEMPT.reset(token)


class CappedBody:
    """A response body that refuses to be read past ``cap`` bytes (aiohttp's flow control
    keeps what is received and unread within its read buffer). The reads the SDKs make are
    counted (httpx-aiohttp: ``iter_chunked``; google-genai: ``iter_any`` and ``read``); the
    rest of the reader is passed through."""

    def __init__(self, reader: aiohttp.StreamReader, cap: int):
        self._reader, self._cap, self._read = reader, cap, 0

    def __getattr__(self, name: str):
        return getattr(self._reader, name)

    def _checked(self, data: bytes) -> bytes:
        self._read += len(data)
        if self._read > self._cap:
            raise ResponseTooLarge(f"the response passed the {self._cap}-byte cap")
        return data

    async def read(self, n: int = -1) -> bytes:
        if n >= 0:
            return self._checked(await self._reader.read(n))
        blocks = []
        while block := await self.readany():
            blocks.append(block)
        return b"".join(blocks)

    async def readany(self) -> bytes:
        return self._checked(await self._reader.readany())

    async def iter_any(self):
        while block := await self.readany():
            yield block

    async def iter_chunked(self, n: int):
        while block := await self.read(n):
            yield block


async def response_cap(request: aiohttp.ClientRequest, handler) -> aiohttp.ClientResponse:
    """Every answer's body is read through ``CappedBody``."""
    response = await handler(request)
    response.content = CappedBody(response.content, settings.MODELHUB["MAX_RESPONSE_BYTES"])
    return response


def session_create(
    *, limit: int = 100, keepalive_timeout: float | None = 15.0, ssl=True, read_bufsize: int = 2**16
) -> aiohttp.ClientSession:
    """An aiohttp session with the guarded resolver and the stale-connection retry. Call it
    on the event loop that will use the session. Environment proxies are not used: through a
    proxy the target would be resolved by the proxy, out of the guard's sight."""
    connector = _PoolTellingConnector(
        resolver=GuardedResolver(), limit=limit, keepalive_timeout=keepalive_timeout, ssl=ssl
    )
    return aiohttp.ClientSession(
        connector=connector, middlewares=(response_cap, stale_connection_retry), read_bufsize=read_bufsize
    )


def sdk_transport(transport_class: type, *, limits):
    """The SDK's own httpx2-on-aiohttp transport (openai and anthropic vendor httpx-aiohttp's
    ``AiohttpTransport``), built as the SDK's ``DefaultAioHttpClient`` builds it but on a
    session from ``session_create``, made on first use inside the running loop with the TLS
    context the transport made."""

    def guarded_session() -> aiohttp.ClientSession:
        return session_create(
            limit=limits.max_connections or 0, keepalive_timeout=limits.keepalive_expiry, ssl=transport.ssl_context
        )

    transport = transport_class(limits=limits, client=guarded_session)
    return transport


async def json_post(*, url: str, payload: dict, timeout: float) -> int:
    """POST ``payload`` as JSON through a guarded session, never following a redirect;
    returns the status."""
    async with (
        session_create(limit=1) as session,
        session.post(
            url, json=payload, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response,
    ):
        return response.status


def refusal_of(exc: BaseException) -> PrivateAddressRefused | None:
    """The guard's refusal behind an aiohttp connection error, if that was the cause."""
    cause = exc.__cause__
    return cause if isinstance(cause, PrivateAddressRefused) else None

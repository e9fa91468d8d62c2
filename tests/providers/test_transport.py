"""Outbound connections below every SDK (modelhub/providers/transport.py): a name that resolves
to a private address at connect time is refused even after it passed the admin's check (DNS
rebinding), and a request written on a pooled keep-alive connection that the upstream had
already closed is sent again once, on a new connection, instead of failing the model."""

import asyncio
import itertools
import socket
import threading
import urllib.request
from typing import ClassVar

import orjson
import pytest
from aiohttp.abc import AbstractResolver

from modelhub.models import ModelHealth, Provider
from modelhub.providers.base import ErrorKind, ProviderError
from modelhub.providers.transport import GuardedResolver, PrivateAddressRefused
from modelhub.providers.urls import base_url_validate
from tests.hubserver import hub_server, ledger_rows, live  # noqa: F401 - fixtures

from .conftest import KEY, chat_request

PUBLIC, LOOPBACK = "93.184.216.34", "127.0.0.1"


class ScriptedResolver(AbstractResolver):
    """Answers each lookup with the next address of ``script`` (the last one repeats), the way
    a rebinding DNS server answers the check with a public address and the connection with
    a private one. Set as MODELHUB_DNS_RESOLVER, so the guard wraps it as it wraps aiohttp's."""

    script: ClassVar[list[str]] = []
    lookups: ClassVar[list[str]] = []

    async def resolve(self, host, port=0, family=socket.AF_INET):
        self.lookups.append(host)
        address = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [{"hostname": host, "host": address, "port": port, "family": family, "proto": 0, "flags": 0}]

    async def close(self):
        pass


@pytest.fixture
def dns(settings):
    """dns(*addresses): what the next lookups answer, in order."""
    settings.MODELHUB = {**settings.MODELHUB, "DNS_RESOLVER": f"{__name__}.ScriptedResolver"}
    ScriptedResolver.lookups.clear()

    def answer(*addresses):
        ScriptedResolver.script[:] = addresses

    yield answer
    ScriptedResolver.script.clear()


@pytest.fixture
def strict(settings):
    """Outside the embedded default: private addresses are not allowed, nothing allowlisted."""
    settings.MODELHUB = {**settings.MODELHUB, "ALLOW_PRIVATE_BASE_URLS": False, "BASE_URL_ALLOWLIST": []}


async def _call(adapter, model, how):
    if how == "chat":
        return (await adapter.chat(model, chat_request())).text
    return "".join([event.text async for event in adapter.stream(model, chat_request())])


# -- SSRF at connect time ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["chat", "stream"])
async def test_a_name_rebound_to_loopback_after_the_check_is_refused_at_connect_time(
    kind, how, strict, dns, connect, simulator, sim
):
    url = simulator.base_url(kind).replace("http://127.0.0.1", "https://rebind.example")
    dns(PUBLIC, LOOPBACK)
    await asyncio.to_thread(base_url_validate, url=url)  # the admin's check: a public address
    adapter, model = connect(kind, base_url=url)

    with pytest.raises(ProviderError) as error:
        await _call(adapter, model, how)

    assert error.value.kind is ErrorKind.CONNECTION
    assert "rebind.example resolves to 127.0.0.1, a private, loopback or reserved address" in error.value.message
    assert KEY not in error.value.message
    assert ScriptedResolver.lookups == ["rebind.example", "rebind.example"]
    assert sim.calls == []


async def test_an_allowlisted_name_still_reaches_its_private_address(kind, strict, settings, dns, connect, simulator):
    settings.MODELHUB = {**settings.MODELHUB, "BASE_URL_ALLOWLIST": ["Models.Internal"]}
    dns(LOOPBACK)
    adapter, model = connect(kind, base_url=simulator.base_url(kind).replace("127.0.0.1", "models.internal"))

    assert (await adapter.chat(model, chat_request())).text.startswith("Simulated reply")
    assert ScriptedResolver.lookups == ["models.internal"]


async def test_the_embedded_default_reaches_any_name(kind, settings, dns, connect, simulator):
    settings.MODELHUB = {**settings.MODELHUB, "ALLOW_PRIVATE_BASE_URLS": True, "BASE_URL_ALLOWLIST": []}
    dns(LOOPBACK)
    adapter, model = connect(kind, base_url=simulator.base_url(kind).replace("127.0.0.1", "sim.local"))

    assert (await adapter.chat(model, chat_request())).text.startswith("Simulated reply")


class _Answers(AbstractResolver):
    def __init__(self, *addresses):
        self.addresses = addresses

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [
            {"hostname": host, "host": a, "port": port, "family": 0, "proto": 0, "flags": 0} for a in self.addresses
        ]

    async def close(self):
        pass


@pytest.mark.parametrize(
    "addresses",
    [
        (PUBLIC, "10.0.0.5"),
        ("::ffff:127.0.0.1",),
        ("fe80::1%eth0",),
        ("169.254.169.254",),
        ("100.64.0.1",),
        ("224.0.0.1",),
    ],
)
async def test_the_guard_refuses_an_answer_with_any_private_address(strict, addresses):
    with pytest.raises(PrivateAddressRefused, match="^host.example resolves to"):
        await GuardedResolver(_Answers(*addresses)).resolve("host.example", 443)


async def test_the_guard_passes_public_answers_through(strict):
    answers = await GuardedResolver(_Answers(PUBLIC, "2606:4700:4700::1111")).resolve("host.example", 443)

    assert [a["host"] for a in answers] == [PUBLIC, "2606:4700:4700::1111"]


# -- stale keep-alive connections -------------------------------------------------------------

ANSWER, DROP, HOLD = "answered", "dropped", "held"
_OPENAI = {
    "id": "c-1",
    "object": "chat.completion",
    "created": 1,
    "model": "keepalive",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
_ANTHROPIC = {
    "id": "msg-1",
    "type": "message",
    "role": "assistant",
    "model": "keepalive",
    "content": [{"type": "text", "text": "pong"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 3, "output_tokens": 1},
}
_GEMINI = {
    "candidates": [{"content": {"role": "model", "parts": [{"text": "pong"}]}, "finishReason": "STOP", "index": 0}],
    "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4},
    "modelVersion": "keepalive",
}
_CHUNK = {**_OPENAI, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "pong"}}]}
_SSE = b"".join(
    b"data: " + orjson.dumps(event) + b"\n\n"
    for event in (_CHUNK, {**_CHUNK, "choices": [], "usage": _OPENAI["usage"]})
)


def _answer(path: str, body: dict) -> tuple[bytes, bytes]:
    """(content type, body) in the wire format the path belongs to."""
    if path.endswith("/chat/completions"):
        if body.get("stream"):
            return b"text/event-stream", _SSE + b"data: [DONE]\n\n"
        return b"application/json", orjson.dumps(_OPENAI)
    if path.endswith("/messages"):
        return b"application/json", orjson.dumps(_ANTHROPIC)
    return b"application/json", orjson.dumps(_GEMINI)


class KeepAliveUpstream:
    """A raw HTTP/1.1 upstream that keeps connections alive and answers OpenAI's, Anthropic's
    and Gemini's wire. ``policy(connection, nth)`` decides each request, the nth (from 0) on
    its connection: ANSWER it, DROP the connection unanswered (a server closing an idle
    connection just as a request crosses its close), or HOLD it unanswered."""

    def __init__(self, policy):
        self.policy = policy
        self.log: list[tuple[int, int, str]] = []
        self._connections = 0
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def base_url(self, kind: str) -> str:
        root = f"http://127.0.0.1:{self.port}"
        return f"{root}/v1" if kind in ("openai", "openai_compatible") else root

    def start(self):
        self._thread.start()
        assert self._ready.wait(5)

    def stop(self):
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(5)

    def _run(self):
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self):
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        connections = asyncio.all_tasks() - {asyncio.current_task()}
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await server.wait_closed()

    async def _serve(self, reader, writer):
        connection, self._connections = self._connections, self._connections + 1
        try:
            for nth in itertools.count():
                path, body = await self._request(reader)
                decision = self.policy(connection, nth)
                self.log.append((connection, nth, decision))
                if decision != ANSWER:
                    if decision == HOLD:
                        await reader.read()  # until the client gives up
                    return
                content_type, payload = _answer(path, body)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type
                    + b"\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
                )  # fmt: skip
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed its side
        finally:
            writer.close()

    @staticmethod
    async def _request(reader) -> tuple[str, dict]:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
        body = await reader.readexactly(int(headers.get("content-length", 0)))
        return head[0].split(" ")[1].split("?")[0], orjson.loads(body or b"{}")


def _only_first_on_each_connection(connection, nth):
    return ANSWER if nth == 0 else DROP


@pytest.fixture
def upstream(request):
    server = KeepAliveUpstream(getattr(request, "param", _only_first_on_each_connection))
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("kind", ["openai", "anthropic", "google", "openai_compatible"])
async def test_a_pooled_connection_the_upstream_closed_is_retried_on_a_new_one(kind, upstream, connect):
    adapter, model = connect(kind, base_url=upstream.base_url(kind))

    answers = [await _call(adapter, model, "chat") for _ in range(2)]

    assert answers == ["pong", "pong"]
    assert upstream.log == [(0, 0, ANSWER), (0, 1, DROP), (1, 0, ANSWER)]


async def test_a_stream_on_a_closed_pooled_connection_is_retried_before_its_first_byte(upstream, connect):
    adapter, model = connect("openai", base_url=upstream.base_url("openai"))

    assert [await _call(adapter, model, "stream") for _ in range(2)] == ["pong", "pong"]
    assert upstream.log == [(0, 0, ANSWER), (0, 1, DROP), (1, 0, ANSWER)]


async def test_the_retry_takes_a_new_connection_when_every_pooled_one_was_closed(upstream, connect):
    """An upstream closing idle connections closes all of its idle ones at once: the retry must
    not take the next pooled connection, which is as stale as the first (seen under load: both
    attempts failed with "Cannot write to closing transport" and the model went cooling)."""
    adapter, model = connect("openai", base_url=upstream.base_url("openai"))
    assert await asyncio.gather(*(_call(adapter, model, "chat") for _ in range(3))) == ["pong"] * 3

    assert await _call(adapter, model, "chat") == "pong"

    first_answers, later = upstream.log[:3], upstream.log[3:]
    assert sorted(first_answers) == [(0, 0, ANSWER), (1, 0, ANSWER), (2, 0, ANSWER)]
    assert len(later) == 2 and later[0][1:] == (1, DROP) and later[1] == (3, 0, ANSWER)


@pytest.mark.parametrize("upstream", [lambda connection, nth: DROP], indirect=True)
async def test_a_new_connection_dropped_before_an_answer_is_not_retried(upstream, connect):
    adapter, model = connect("openai", base_url=upstream.base_url("openai"))

    with pytest.raises(ProviderError) as error:
        await _call(adapter, model, "chat")

    assert "Server disconnected" in error.value.message
    assert upstream.log == [(0, 0, DROP)]


@pytest.mark.parametrize(
    "upstream", [lambda connection, nth: ANSWER if connection == nth == 0 else DROP], indirect=True
)
async def test_the_retry_is_made_once_and_its_failure_counts(upstream, connect):
    adapter, model = connect("openai", base_url=upstream.base_url("openai"))
    await _call(adapter, model, "chat")

    with pytest.raises(ProviderError) as error:
        await _call(adapter, model, "chat")

    assert "Server disconnected" in error.value.message
    assert upstream.log == [(0, 0, ANSWER), (0, 1, DROP), (1, 0, DROP)]


@pytest.mark.parametrize("upstream", [lambda connection, nth: ANSWER if nth == 0 else HOLD], indirect=True)
async def test_a_timeout_on_a_pooled_connection_is_not_retried(upstream, connect):
    """The upstream took the request and may be working on it: sending it again could run it twice."""
    adapter, model = connect("openai", base_url=upstream.base_url("openai"), timeout=0.5)
    await _call(adapter, model, "chat")

    with pytest.raises(ProviderError) as error:
        await _call(adapter, model, "chat")

    assert error.value.kind is ErrorKind.TIMEOUT
    assert upstream.log == [(0, 0, ANSWER), (0, 1, HOLD)]


def _chat(live) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{live.server.url}/api/v1/pam/chat",
        data=orjson.dumps({"message": "Hi"}),
        headers={"Authorization": f"Bearer {live.key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, orjson.loads(response.read())


@pytest.mark.django_db(transaction=True)
def test_through_the_hub_a_closed_pooled_connection_costs_the_model_nothing(live, upstream):
    provider = live.providers["openai_compatible"]
    Provider.objects.filter(pk=provider.pk).update(base_url=upstream.base_url("openai_compatible"))
    model = live.model("keepalive", "openai_compatible")
    live.route("pam", [model])

    first, second = _chat(live), _chat(live)

    assert (first[0], second[0]) == (200, 200)
    assert [a["outcome"] for a in second[1]["attempts"]] == ["ok"]
    rows = ledger_rows(model.model_id, until=lambda rows: len(rows) == 2)
    assert {(row.request_id, row.outcome) for row in rows} == {
        (first[1]["request_id"], "ok"),
        (second[1]["request_id"], "ok"),
    }
    assert not ModelHealth.objects.filter(model=model).exclude(state="healthy").exists()
    assert upstream.log == [(0, 0, ANSWER), (0, 1, DROP), (1, 0, ANSWER)]

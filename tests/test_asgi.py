"""The ASGI entry point: API paths skip the browser middleware, the rest keeps it; chat
requests past the per-process in-flight limit are refused at once."""

import asyncio
import time
import urllib.error
import urllib.request

import openai
import orjson
import pytest
from asgiref.testing import ApplicationCommunicator

from tests.hubserver import asgi_loaded, hub_server, live  # noqa: F401 - fixtures


async def _get(path, method="GET", app=None):
    application = await asyncio.to_thread(asgi_loaded)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    app = ApplicationCommunicator(app or application, scope)
    await app.send_input({"type": "http.request", "body": b"{}", "more_body": False})
    start = await app.receive_output(5)
    await app.receive_output(5)
    return start["status"], {k.lower(): v for k, v in start["headers"]}


@pytest.mark.django_db(transaction=True)
async def test_chat_is_served_without_browser_middleware():
    status, headers = await _get("/api/v1/pam/chat", "POST")
    assert status == 401  # no CSRF 403: the API authenticates by key
    assert b"x-frame-options" not in headers  # clickjacking middleware skipped
    assert b"vary" not in headers  # no session or auth middleware touched the response


@pytest.mark.django_db(transaction=True)
async def test_chat_requests_skip_the_request_signals_and_their_thread_hops_other_paths_send_them():
    """Django runs request_started's (and request_finished's) sync receivers through
    sync_to_async: two thread hops per request, which a chat request (no database work of
    its own) does without."""
    from django.core.signals import request_started

    heard = []

    def started(**kwargs):
        heard.append(kwargs["scope"]["path"])

    request_started.connect(started)
    try:
        for path in ("/api/v1/pam/chat", "/v1/chat/completions"):
            assert (await _get(path, "POST"))[0] == 401
        assert (await _get("/v1/models"))[0] == 401
    finally:
        request_started.disconnect(started)
    assert heard == ["/v1/models"]


@pytest.mark.django_db(transaction=True)
async def test_admin_keeps_the_browser_middleware():
    status, headers = await _get("/admin/")
    assert status == 302
    assert headers[b"x-frame-options"] == b"DENY"


def _until(condition, timeout=5.0):
    """The server thread ends a request's bookkeeping just after its last byte reached us."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def _native_chat(live):
    request = urllib.request.Request(
        f"{live.server.url}/api/v1/pam/chat",
        data=b'{"message": "Hi", "stream": true}',
        headers={"Authorization": f"Bearer {live.key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers, refused.read()


@pytest.mark.django_db(transaction=True)
def test_chat_past_the_inflight_limit_is_refused_at_once_and_recovers(live, sim, settings):
    from pam.asgi import api

    settings.MODELHUB = {**settings.MODELHUB, "MAX_INFLIGHT": 2}
    model = live.model("paced", "openai")
    live.route("pam", [model])
    sim.set_pace("paced", chunks=3, interval_ms=300)  # each stream stays open ~0.6 s after its first byte
    oai = openai.OpenAI(base_url=f"{live.server.url}/v1", api_key=live.key, max_retries=0, timeout=10)
    messages = [{"role": "user", "content": "Hi"}]

    held = [oai.chat.completions.create(model="pam", messages=messages, stream=True) for _ in range(2)]
    with pytest.raises(openai.APIStatusError) as refused:
        oai.chat.completions.create(model="pam", messages=messages, stream=True)
    status, headers, body = _native_chat(live)
    listed = oai.models.list()  # not a chat path: not limited

    assert (refused.value.status_code, refused.value.response.headers["retry-after"]) == (503, "1")
    assert refused.value.body["code"] == "overloaded" and refused.value.body["type"] == "server_error"
    assert (status, headers["Retry-After"]) == (503, "1")
    native = orjson.loads(body)
    assert native["error"]["type"] == "overloaded" and native["request_id"] == headers["X-Request-ID"]
    assert "pam" in [entry.id for entry in listed]
    for stream in held:  # the two admitted streams were not disturbed
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "1 2 3"
    assert _until(lambda: api.inflight == 0)
    sim.set_pace("paced", chunks=3)
    again = oai.chat.completions.create(model="pam", messages=messages, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in again if c.choices) == "1 2 3"
    assert [call.status for call in sim.calls] == [200, 200, 200]  # the refused ones never reached upstream
    oai.close()


@pytest.mark.django_db(transaction=True)
async def test_memory_is_given_back_once_idle_after_a_load(monkeypatch):
    from modelhub.api import asgi

    released = []
    monkeypatch.setattr(asgi, "TRIM_AFTER_PEAK", 2)
    monkeypatch.setattr(asgi, "TRIM_IDLE_SECONDS", 0.05)
    monkeypatch.setattr(asgi, "memory_release", lambda: released.append(True))
    handler = asgi.ApiHandler()

    await _get("/api/v1/pam/chat", "POST", app=handler)  # a peak of 1: below the load that calls for it
    await asyncio.sleep(0.2)
    assert released == [] and handler.peak == 1
    await asyncio.gather(*(_get("/api/v1/pam/chat", "POST", app=handler) for _ in range(3)))
    for _ in range(100):
        if released:
            break
        await asyncio.sleep(0.02)
    assert released == [True] and handler.peak == 0


def test_the_preload_thread_loads_the_websocket_consumers_and_the_sdks(tmp_path):
    """In a fresh process (as uvicorn imports it): the module's preload thread runs to its
    end without a warning, the websocket consumers and the routed providers' SDKs loaded."""
    import subprocess
    import sys

    from tests.e2e.conftest import ROOT

    script = (
        "import logging, threading, sys\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('migrate', verbosity=0)\n"
        "import pam.asgi\n"
        "[t.join(30) for t in threading.enumerate() if t.name == 'modelhub-preload']\n"
        "print('ws' if 'modelhub.ws.consumers' in sys.modules else 'no-ws', 'anthropic' in sys.modules)\n"
    )
    env = {"DJANGO_SETTINGS_MODULE": "pam.settings", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    env["ANTHROPIC_API_KEY"] = "sk-test-not-used"  # a routed provider with a key: its SDK is preloaded
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ws", "True"], done.stdout
    assert "preload skipped" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    "query, left, key",
    [
        (b"api_key=pam_secret&x=1", b"x=1", "pam_secret"),
        (b"token=pam_hybrid", b"", "pam_hybrid"),
        (b"token=second&api_key=first&api_key=other", b"", "first"),
        (b"x=1", b"x=1", None),
    ],
)
def test_a_websocket_key_on_the_url_is_taken_off_the_query_before_anything_logs_it(query, left, key):
    from pam.asgi import key_from_query

    scope = {"type": "websocket", "query_string": query}
    key_from_query(scope)
    assert (scope["query_string"], scope.get("modelhub_query_key")) == (left, key)

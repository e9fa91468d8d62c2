"""The hub served over real HTTP (uvicorn in a thread), for clients such as the official
OpenAI SDK that cannot go through Django's test client."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import uvicorn

from tests.hubtools import KEY_ENV, Hub


class HubServer:
    """Serves ``app`` (default: the hub, pam.asgi) from a thread on a loopback port."""

    def __init__(self, app=None):
        self.app = app
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        application = asgi_loaded()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        config = uvicorn.Config(
            self.app or application,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
            log_config=None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name=f"hub:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the hub did not start")
            time.sleep(0.005)

    def adapters_close(self) -> None:
        """Close the provider adapters (their aiohttp sessions) that the test's runtime opened
        on this server's loop. The runtime is dropped after each test, and asyncio reports an
        aiohttp session collected unclosed as an error."""
        from modelhub.runtime import runtime

        loop = self._server.servers[0].get_loop() if self._server and self._server.servers else None
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(runtime().adapters.close(), loop).result(timeout=10)

    def stop(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=3)
            self._thread = None


def asgi_loaded():
    """The hub's ASGI application, once the preload thread its import starts has ended: that
    thread reads the routing tables (under SQLite's shared cache a test writing one meanwhile
    fails with "database table is locked") and holds the import lock while it loads the SDKs."""
    from pam.asgi import application

    for thread in threading.enumerate():
        if thread.name == "modelhub-preload":
            thread.join(timeout=60)
    return application


@pytest.fixture(scope="session")
def hub_server():
    server = HubServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def live(transactional_db, sim, simulator, client, monkeypatch, hub_server):
    """A Hub whose data other threads see (committed), served by ``live.server``."""
    monkeypatch.setenv(KEY_ENV, "sim-test-key")
    hub = Hub(simulator, client)
    hub.server = hub_server
    yield hub
    hub_server.adapters_close()


def ledger_rows(model, *, until, timeout: float = 5.0):
    """Usage rows of ``model`` once ``until(rows)`` holds: the server thread records some
    attempts (a client that left) after the client has moved on."""
    from modelhub.models import UsageRecord
    from modelhub.runtime import runtime

    deadline = time.monotonic() + timeout
    while True:
        runtime().ledger.flush()
        rows = list(UsageRecord.objects.filter(model=model).order_by("attempt"))
        if until(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)

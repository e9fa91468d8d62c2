"""Serving the simulator over real HTTP: in a background thread (tests) or in the foreground (demo)."""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from .app import Simulator

BASE_PATHS = {
    "anthropic": "/anthropic",
    "openai": "/openai/v1",
    "google": "/gemini",
    "gemini": "/gemini",
    "openai_compatible": "/compat/v1",
    "compat": "/compat/v1",
}
_DROPPED_STREAM = "ASGI callable returned without completing response."


class _QuietDroppedStreams(logging.Filter):
    """A cut_after_chunks fault drops streams on purpose; uvicorn would log each as an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != _DROPPED_STREAM


def _quiet_dropped_streams() -> None:
    log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDroppedStreams) for f in log.filters):
        log.addFilter(_QuietDroppedStreams())


def _config(sim: Simulator, **options) -> uvicorn.Config:
    _quiet_dropped_streams()
    return uvicorn.Config(
        sim.app,
        loop="auto",
        http="auto",
        interface="asgi3",
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_graceful_shutdown=1,
        **options,
    )


class SimulatorServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, sim: Simulator | None = None):
        self.host, self.port = host, port
        self.sim = sim or Simulator()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def base_url(self, kind: str) -> str:
        """The base URL to give the SDK of ``kind`` (anthropic, openai, google, openai_compatible)."""
        try:
            return self.url + BASE_PATHS[kind]
        except KeyError:
            raise ValueError(f"unknown upstream kind {kind!r}") from None

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        self.port = listener.getsockname()[1]
        self._server = uvicorn.Server(_config(self.sim, log_config=None))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name=f"simulator:{self.port}", daemon=True
        )
        self._thread.start()
        self._wait_started()

    def _wait_started(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulated upstream did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._thread is None:
            return
        self.sim.release_hangs()
        self._server.should_exit = True
        self._thread.join(timeout=2.5)
        self._thread = None

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(host: str = "127.0.0.1", port: int = 8900, sim: Simulator | None = None) -> None:
    """Serve the simulator in the foreground until interrupted."""
    uvicorn.Server(_config(sim or Simulator(), host=host, port=port)).run()

"""Real hub servers (uvicorn subprocesses) on the test's PostgreSQL database and Redis, for
tests that cross process boundaries. They see the test's rows because those tests run with
``transaction=True`` (committed at once)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.hubtools import KEY_ENV, Hub

ROOT = Path(__file__).resolve().parents[2]
UVICORN = ROOT / ".venv" / "bin" / "uvicorn"


def on_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


needs_postgres = pytest.mark.skipif(not on_postgres(), reason="needs DATABASE_URL on PostgreSQL")
needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")


def database_url_of_tests() -> str:
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HubServer:
    def __init__(self, port: int, process: subprocess.Popen):
        self.port, self.process = port, process
        self.url = f"http://127.0.0.1:{port}"

    def request(self, method: str, path: str, body=None, key: str | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def chat(self, key: str, route: str = "pam") -> dict:
        status, body = self.request("POST", "/api/v1/pam/chat", {"message": "Hi", "route": route}, key)
        assert status == 200, body
        return body

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"hub server on port {self.port} exited with {self.process.returncode}")
            try:
                urllib.request.urlopen(self.url + "/api/v1/health", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # it answers (503: not yet able to route)
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"hub server on port {self.port} did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def hub_server_start(**env) -> HubServer:
    port = free_port()
    environ = {
        **os.environ,
        "DATABASE_URL": database_url_of_tests(),
        "REDIS_URL": settings.REDIS_URL or "",
        KEY_ENV: "sim-test-key",
        "MODELHUB_LOG_LEVEL": "WARNING",
        # A hub's spool is its own test's: a hub killed here is not replayed into the next test.
        "MODELHUB_SPOOL_DIR": tempfile.mkdtemp(prefix="hub-spool-"),
        **env,
    }
    process = subprocess.Popen(
        [str(UVICORN), "pam.asgi:application", "--port", str(port), "--no-access-log", "--log-level", "warning"],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
    )
    return HubServer(port, process)


@contextlib.contextmanager
def servers_running(count: int = 2, **env):
    """``count`` hub servers (with these environment overrides), ready, stopped on exit."""
    servers = [hub_server_start(**env) for _ in range(count)]
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


@contextlib.contextmanager
def celery_worker_process(queue: str, name: str, *, output=subprocess.DEVNULL, level: str = "warning", **env):
    """A `celery worker` process (solo pool) on the test database, consuming ``queue``, its
    output to ``output``; stopped (warm) on exit, killed if it does not stop in 30 s."""
    environ = {
        **os.environ,
        "DATABASE_URL": database_url_of_tests(),
        KEY_ENV: "sim-test-key",
        "MODELHUB_SPOOL_DIR": tempfile.mkdtemp(prefix="worker-spool-"),
        **env,
    }
    command = [str(ROOT / ".venv" / "bin" / "celery"), "-A", "pam", "worker", "-P", "solo", "-Q", queue]
    command += ["-n", f"{name}@{queue}", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", level]
    process = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def hub_servers(transactional_db, request):
    """Start ``request.param`` servers (default 2) and stop them before the database is flushed."""
    with servers_running(getattr(request, "param", 2)) as servers:
        yield servers


@pytest.fixture
def e2e_hub(transactional_db, sim, simulator, client, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sim-test-key")
    return Hub(simulator, client)

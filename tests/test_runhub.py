"""bin/serve's command as a newcomer runs it: stopped with SIGTERM, it leaves no simulated
upstream behind (the next start can bind its port), and its demo key still works after a
restart."""

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from tests.e2e.conftest import ROOT, free_port

START_SECONDS = 60


def _start(tmp_path, port: int, sim_port: int) -> tuple[subprocess.Popen, str]:
    """runhub on a SQLite database of its own; returns the process and the demo key it printed."""
    environ = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'hub.sqlite3'}",
        "REDIS_URL": "",
        "MODELHUB_SPOOL_DIR": str(tmp_path / "spool"),
    }
    process = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "python"),
            "manage.py",
            "runhub",
            "--port",
            str(port),
            "--sim-port",
            str(sim_port),
        ],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        key = _printed_key(process)
        _wait(lambda: _answers(f"http://127.0.0.1:{port}/api/v1/health"), "the hub to answer")
    except BaseException:  # a start that failed leaves nothing running
        process.terminate()
        process.wait(timeout=20)
        raise
    return process, key


def _printed_key(process: subprocess.Popen) -> str:
    """The key in the banner's curl line, read on a thread so that a silent start fails in time."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        try:
            found = re.search(r"Bearer (\S+)'", lines.get(timeout=1))
        except queue.Empty:
            continue
        if found:
            return found[1]
    pytest.fail("runhub printed no demo key")


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _wait(condition, what: str, seconds: float = START_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _chat(port: int, key: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/pam/chat",
        data=json.dumps({"message": "Hi"}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_sigterm_stops_the_simulator_and_the_demo_key_survives_a_restart(tmp_path):
    port, sim_port = free_port(), free_port()
    first, key = _start(tmp_path, port, sim_port)
    try:
        assert _chat(port, key) == 200
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=20)
    finally:
        first.kill()
    _wait(lambda: _port_free(sim_port), "the simulated upstream to stop", seconds=10)

    second, key_again = _start(tmp_path, port, sim_port)  # binds the simulator's port again
    try:
        assert key_again == key
        assert _chat(port, key) == 200
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)
    _wait(lambda: _port_free(sim_port), "the simulated upstream to stop", seconds=10)
    assert (tmp_path / "hub.sqlite3.demo-api-key").stat().st_mode & 0o077 == 0  # its owner's only

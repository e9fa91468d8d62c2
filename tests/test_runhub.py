"""bin/serve's command as a newcomer runs it: stopped with SIGTERM, it leaves no simulated
upstream behind (the next start can bind its port), its demo key still works after a
restart, and the scheduled work (probes, rollups, alerts) runs on its schedules without a
broker or a worker (``pam.celery.EmbeddedBeat``)."""

import json
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from modelhub import probes
from modelhub.models import Route, UsageRecord
from pam.celery import EmbeddedBeat
from tests.e2e.conftest import ROOT, e2e_hub, free_port  # noqa: F401 - e2e_hub: a fixture

START_SECONDS = 60


def _environ(tmp_path) -> dict:
    """A SQLite database of its own, no Redis: the embedded default."""
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'hub.sqlite3'}",
        "REDIS_URL": "",
        "MODELHUB_SPOOL_DIR": str(tmp_path / "spool"),
    }


def _start(tmp_path, port: int, sim_port: int) -> tuple[subprocess.Popen, str]:
    """runhub on a SQLite database of its own; returns the process and the demo key it printed."""
    environ = _environ(tmp_path)
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


def test_the_embedded_beat_runs_a_task_on_its_database_schedule(e2e_hub, sim, monkeypatch):
    monkeypatch.setattr(probes, "LOCK_PREFIX", f"test-probe-lock:{uuid.uuid4().hex}:")
    Route.objects.exclude(name="soon").update(enabled=False)
    e2e_hub.route("soon", [e2e_hub.model("beat-probed", "openai")])
    PeriodicTask.objects.update(enabled=False)
    every_second = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="probe soon", task="modelhub.tasks.probe_models", interval=every_second)

    beat = EmbeddedBeat(max_interval=1).start()
    try:
        _wait(lambda: UsageRecord.objects.filter(is_probe=True).exists(), "a scheduled probe", seconds=30)
    finally:
        beat.stop()

    assert [call.model for call in sim.calls][:1] == ["beat-probed"]
    assert not beat.thread.is_alive()
    assert PeriodicTask.objects.get(name="probe soon").total_run_count >= 1  # saved when it stopped


def test_runhub_probes_and_rolls_up_on_the_schedules_in_its_database(tmp_path):
    """The newcomer's path: bin/serve's command on a fresh database whose five-minute
    schedule (probes, rollups, alerts) an operator set to every second in admin."""
    environ = _environ(tmp_path)
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=environ, check=True
    )
    database = tmp_path / "hub.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.execute(
            "UPDATE django_celery_beat_intervalschedule SET every = 1, period = 'seconds' "
            "WHERE every = 5 AND period = 'minutes'"
        )

    process, _ = _start(tmp_path, free_port(), free_port())
    try:
        _wait(lambda: _probed_and_rolled_up(database), "a probe round and a rollup", seconds=60)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def _probed_and_rolled_up(database) -> bool:
    today = datetime.now(UTC).date().isoformat()
    with sqlite3.connect(database, timeout=5) as connection:
        probed = connection.execute("SELECT count(*) FROM modelhub_usagerecord WHERE is_probe").fetchone()[0]
        rolled = connection.execute(
            "SELECT count(*) FROM modelhub_rollupday WHERE day = ? AND rolled_up_at IS NOT NULL", (today,)
        ).fetchone()[0]
    return probed > 0 and rolled > 0

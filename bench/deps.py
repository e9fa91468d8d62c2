"""Dependency failures for real: the hub under a paced chat load while its Redis is stopped
for a while and started again, then while its PostgreSQL cluster is restarted with
``-m immediate``. Reports, per phase, the chats answered and refused (by status) and their
latency, the health endpoint's transitions, and whether the ledger caught up: its rows
against the chats answered and against the upstream's own count.

It restarts the cluster you name, so point it at a scratch cluster, never at a shared one:

    # a scratch cluster on port 5433 (Debian's tools; as root)
    pg_createcluster 15 scratch -p 5433 --start
    .venv/bin/python bench/deps.py \\
        --database-url postgres://postgres@127.0.0.1:5433/modelhub_deps \\
        --pg-restart "pg_ctlcluster 15 scratch restart -m immediate"

    # or any data directory (pg_ctl as the cluster's owner)
    .venv/bin/python bench/deps.py --database-url postgres://postgres@127.0.0.1:5434/modelhub_deps \\
        --pg-restart "runuser -u postgres -- pg_ctl -D /tmp/pgdata restart -m immediate -w"

The script starts its own redis-server (no persistence, so it comes back empty, the hard
case), the simulated upstream and one uvicorn worker, creates the database if needed,
migrates it and seeds a route and two keys: one with an RPM limit (fails open while Redis
is down) and one with a daily budget (fails closed: 503). It refuses a database on port
5432 unless given ``--force``. Output and the hub's log go to ``bench/results/``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
MODEL, ROUTE, KEY_ENV = "deps-model", "deps", "BENCH_DEPS_KEY"
SEED = """
from decimal import Decimal
from modelhub.models import AIModel, Provider, Route, RouteEntry
from modelhub.services import api_key_create
provider, _ = Provider.objects.update_or_create(
    name="deps-sim", defaults=dict(kind="openai", base_url="{base_url}", api_key_env="{key_env}"))
model, _ = AIModel.objects.update_or_create(provider=provider, model_id="{model}", defaults=dict(
    input_price_per_mtok=Decimal("0.15"), output_price_per_mtok=Decimal("0.60")))
route, _ = Route.objects.get_or_create(name="{route}")
route.entries.all().delete()
RouteEntry.objects.create(route=route, model=model, position=0)
for key, secret in (api_key_create(name="deps-rpm", rpm_limit=1_000_000),
                    api_key_create(name="deps-budget", daily_budget_usd=Decimal("1000"))):
    print(key.pk, secret)
"""


@dataclass
class Record:
    """What the load saw: each chat (phase, key, "<HTTP status>[ <error type>]", latency)
    and each health answer (phase, "<HTTP status> <status> <failing checks>")."""

    chats: list[tuple[str, str, str, float]] = field(default_factory=list)
    health: list[tuple[str, str]] = field(default_factory=list)
    phase: str = "warm-up"


def main() -> None:
    args = arguments()
    if urlsplit(args.database_url).port in (None, 5432) and not args.force:
        sys.exit("refusing: the database is on port 5432 (a shared cluster?); use a scratch cluster or --force")
    args.out, args.stamp = ROOT / "bench" / "results", time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # the exit stack stops what it started
    with contextlib.ExitStack() as stack:
        redis_url, restart_redis, stop_redis = redis_server(args.redis_port, stack)
        env = hub_env(args.database_url, redis_url)
        database_create(args.database_url)
        sim_url = simulator(args.sim_port, env, stack)
        keys, key_ids = seed(env, sim_url)
        hub_url, log_path = hub(args.hub_port, env, args.out / f"deps-hub-{args.stamp}.log", stack)
        record = asyncio.run(run_scenario(args, hub_url, keys, restart_redis, stop_redis))
        answered = sum(1 for *_, status, _ in record.chats if status == "200")
        rows = ledger_caught_up(args.database_url, key_ids, answered)
        upstream = upstream_answered(sim_url)
    report(record, answered, rows, upstream, log_path)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a database on the scratch cluster (created if absent)")
    parser.add_argument("--pg-restart", required=True, help="the command that restarts that cluster immediately")
    parser.add_argument("--force", action="store_true", help="allow a database on port 5432")
    parser.add_argument("--rate", type=float, default=100, help="chats per second offered (default 100)")
    parser.add_argument("--redis-down", type=float, default=60, help="seconds Redis stays stopped (default 60)")
    parser.add_argument("--settle", type=float, default=10, help="seconds of load after each recovery (default 10)")
    parser.add_argument("--warm-up", type=float, default=5)
    parser.add_argument("--redis-port", type=int, default=6391)
    parser.add_argument("--sim-port", type=int, default=8911)
    parser.add_argument("--hub-port", type=int, default=8910)
    return parser.parse_args()


# --- the processes -------------------------------------------------------------------------


def redis_server(port: int, stack: contextlib.ExitStack):
    """Its own redis-server; returns its URL and functions that start and stop it."""
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    current: list[subprocess.Popen] = []

    def start() -> None:
        current.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        wait_port(port)

    def stop() -> None:
        while current:
            process = current.pop()
            process.terminate()
            process.wait(10)

    start()
    stack.callback(stop)
    return f"redis://127.0.0.1:{port}/0", start, stop


def hub_env(database_url: str, redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        KEY_ENV: "bench-deps-key",
        "MODELHUB_ALLOW_PRIVATE_BASE_URLS": "true",  # the simulator is on loopback
    }


def database_create(database_url: str) -> None:
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')
    manage(["migrate", "-v0"], hub_env(database_url, ""))


def manage(command: list[str], env: dict[str, str]) -> str:
    return subprocess.run(
        [str(PYTHON), "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


def simulator(port: int, env: dict[str, str], stack: contextlib.ExitStack) -> str:
    process = subprocess.Popen(
        [str(PYTHON), "manage.py", "simupstream", "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    stack.callback(stop_process, process)
    wait_port(port)
    return f"http://127.0.0.1:{port}"


def seed(env: dict[str, str], sim_url: str) -> tuple[dict[str, str], list[int]]:
    """This run's keys (fresh ones, so that its ledger rows are told apart) and their ids."""
    snippet = SEED.format(base_url=f"{sim_url}/openai/v1", key_env=KEY_ENV, model=MODEL, route=ROUTE)
    rpm_id, rpm, budget_id, budget = manage(["shell", "-c", snippet], env).split()[-4:]
    return {"rpm": rpm, "budget": budget}, [int(rpm_id), int(budget_id)]


def hub(port: int, env: dict[str, str], log_path: Path, stack: contextlib.ExitStack) -> tuple[str, Path]:
    log = stack.enter_context(open(log_path, "w"))  # noqa: SIM115 - closed by the exit stack
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/uvicorn"), "pam.asgi:application", "--port", str(port), "--no-access-log"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stack.callback(stop_process, process)
    wait_port(port, timeout=60)
    return f"http://127.0.0.1:{port}", log_path


def stop_process(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.1)
    sys.exit(f"nothing listens on port {port} after {timeout:g}s")


# --- the scenario ----------------------------------------------------------------------------


async def run_scenario(args, hub_url: str, keys: dict[str, str], restart_redis, stop_redis) -> Record:
    record = Record()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        record.phase = "first chat"  # the worker's first chat loads the SDK
        await chat(session, hub_url, keys, "rpm", record)
        tasks = [
            asyncio.create_task(chats(session, hub_url, keys, "rpm", args.rate, record)),
            asyncio.create_task(chats(session, hub_url, keys, "budget", 1, record)),
            asyncio.create_task(health(session, hub_url, record)),
        ]
        await phase(record, "warm-up", args.warm_up)
        stop_redis()
        await phase(record, "redis-down", args.redis_down)
        await asyncio.to_thread(restart_redis)
        await phase(record, "redis-back", args.settle)
        await phase(record, "pg-restarting", 0)
        await asyncio.to_thread(pg_restart, args.pg_restart, args.out / f"deps-pg-restart-{args.stamp}.log")
        await phase(record, "pg-back", args.settle)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return record


def pg_restart(command: str, log_path: Path) -> None:
    """Its output to a file: the restarted server inherits it and keeps it open."""
    with open(log_path, "w") as log:
        subprocess.run(shlex.split(command), check=True, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


async def phase(record: Record, name: str, seconds: float) -> None:
    record.phase = name
    print(f"{time.strftime('%H:%M:%S')} phase {name} ({seconds:g}s)", flush=True)
    await asyncio.sleep(seconds)


async def chats(session, hub_url: str, keys: dict[str, str], key: str, rate: float, record: Record) -> None:
    """Chats of key ``key`` offered at ``rate`` per second, each in its own task (no
    waiting on answers)."""
    pending: set[asyncio.Task] = set()
    try:
        while True:
            task = asyncio.create_task(chat(session, hub_url, keys, key, record))
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(1 / rate)
    finally:
        await asyncio.gather(*pending, return_exceptions=True)


async def chat(session, hub_url: str, keys: dict[str, str], key: str, record: Record) -> None:
    phase, started = record.phase, time.perf_counter()
    body = {"message": "Hi", "route": ROUTE, "max_tokens": 16}
    try:
        async with session.post(
            f"{hub_url}/api/v1/pam/chat", json=body, headers={"Authorization": f"Bearer {keys[key]}"}
        ) as response:
            status = outcome(response.status, await response.read())
    except (TimeoutError, aiohttp.ClientError) as exc:
        status = f"0 {type(exc).__name__}"
    record.chats.append((phase, key, status, (time.perf_counter() - started) * 1000))


async def health(session, hub_url: str, record: Record) -> None:
    """The health endpoint twice a second; each change of its answer is printed."""
    last = None
    while True:
        try:
            async with session.get(f"{hub_url}/api/v1/health") as response:
                body = await response.json()
                seen = (response.status, body["status"], failing(body["checks"]))
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as exc:
            seen = (0, "no answer", type(exc).__name__)
        answer = " ".join(str(part) for part in seen if part != "")
        if answer != last:
            print(f"{time.strftime('%H:%M:%S')} health {answer}", flush=True)
            last = answer
        record.health.append((record.phase, answer))
        await asyncio.sleep(0.5)


def outcome(status: int, body: bytes) -> str:
    if status == 200:
        return "200"
    try:
        return f"{status} {json.loads(body)['error']['type']}"
    except (ValueError, KeyError, TypeError):
        return str(status)


def failing(checks: dict[str, str]) -> str:
    return " ".join(f"{name}={value}" for name, value in checks.items() if value not in ("ok", "eager"))


# --- the outcome -----------------------------------------------------------------------------


def ledger_caught_up(database_url: str, key_ids: list[int], answered: int, timeout: float = 60) -> int:
    """This run's ok ledger rows, once they reach ``answered`` (or after ``timeout``)."""
    deadline, rows = time.monotonic() + timeout, 0
    query = "SELECT count(*) FROM modelhub_usagerecord WHERE api_key_id = ANY(%s) AND outcome = 'ok'"
    with psycopg.connect(database_url, autocommit=True) as connection:
        while time.monotonic() < deadline:
            rows = connection.execute(query, [key_ids]).fetchone()[0]
            if rows >= answered:
                break
            time.sleep(0.5)
    return rows


def upstream_answered(sim_url: str) -> int:
    with urllib.request.urlopen(f"{sim_url}/_sim/calls", timeout=30) as response:
        return sum(1 for call in json.loads(response.read()) if call["model"] == MODEL and call["status"] == 200)


def report(record: Record, answered: int, rows: int, upstream: int, log_path: Path) -> None:
    print("\nphase          key      chats   p50 ms   p99 ms  answers (status [error type]: count)")
    for phase in dict.fromkeys(phase for phase, *_ in record.chats):
        for key in ("rpm", "budget"):
            seen = [(status, ms) for p, k, status, ms in record.chats if p == phase and k == key]
            statuses = ", ".join(f"{s}: {n}" for s, n in sorted(Counter(s for s, _ in seen).items()))
            if seen:
                print(f"{phase:<14} {key:<7} {len(seen):>6} {percentiles(seen):>17}  {statuses}")
        answers = Counter(answer for p, answer in record.health if p == phase)
        if answers:
            print(f"{'':<14} health  " + ", ".join(f"{answer} x{n}" for answer, n in answers.items()))
    print(f"\nchats answered {answered}; ledger ok rows {rows}; upstream answered {upstream}")
    print("ledger " + ("caught up: nothing lost" if rows == answered == upstream else "MISMATCH"))
    log = log_path.read_text(errors="replace").splitlines()
    print(
        f"hub log: {sum(' WARNING ' in line for line in log)} warnings, "
        f"{sum(' ERROR ' in line for line in log)} errors, {sum('Traceback' in line for line in log)} tracebacks "
        f"({log_path})"
    )


def percentiles(seen: list[tuple[str, float]]) -> str:
    latencies = sorted(ms for _, ms in seen)
    if len(latencies) < 2:
        return ""
    cuts = statistics.quantiles(latencies, n=100)
    return f"{cuts[49]:>8.1f} {cuts[98]:>8.1f}"


if __name__ == "__main__":
    main()

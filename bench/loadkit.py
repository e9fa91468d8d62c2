"""The processes bench/load.py measures: the hub (uvicorn, one or more workers) in its
production shape (PostgreSQL + Redis, ledger on, lifespan on), the built-in simulator as its
upstream on loopback, and the figures /proc gives about them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
SIM_KEY = "sim-key-not-secret"
KEY_VARIABLES = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GOOGLE_API_KEY", "GROQ_API_KEY")
ROUTE = "load"


# -- /proc --


@dataclass(frozen=True)
class ProcStats:
    cpu_s: float  # user + system seconds since the process started
    rss_kib: int
    fds: int

    def __add__(self, other: ProcStats) -> ProcStats:
        return ProcStats(self.cpu_s + other.cpu_s, self.rss_kib + other.rss_kib, self.fds + other.fds)


def proc_stats(pid: int) -> ProcStats:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # the name may hold spaces; fields start at "state"
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)
    return ProcStats(cpu, int(fields[21]) * PAGE_KIB, len(os.listdir(f"/proc/{pid}/fd")))


def total_stats(pids: list[int]) -> ProcStats:
    total = ProcStats(0.0, 0, 0)
    for pid in pids:
        total += proc_stats(pid)
    return total


def worker_pids(pid: int, workers: int) -> list[int]:
    """The processes that serve requests: uvicorn itself, or its spawned workers."""
    if workers == 1:
        return [pid]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            spawned = [int(child) for child in children.read().split() if _is_worker(int(child))]
        if len(spawned) == workers:
            return spawned
        time.sleep(0.2)
    raise RuntimeError(f"uvicorn did not start {workers} workers")


def _is_worker(pid: int) -> bool:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        command = cmdline.read()
    return b"spawn_main" in command and b"resource_tracker" not in command


# -- processes --


class Stack:
    """Starts the simulator and the hub, stops them (only them) on exit."""

    def __init__(self, args, logs: Path):
        self.args, self.logs = args, logs
        self.processes: list[subprocess.Popen] = []
        self.hub: subprocess.Popen | None = None
        self.sim_url = f"http://127.0.0.1:{args.sim_port}"
        self.url = f"http://127.0.0.1:{args.hub_port}"
        self.memprobe_out = logs / "memprobe.txt"

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        for process in reversed(self.processes):
            stop(process)

    def simulator_start(self, pace: str) -> None:
        command = [PYTHON, "manage.py", "simupstream", "--port", str(self.args.sim_port), "--pace", pace]
        self._spawn(command, self.args.side_cpus, self.env(), "simulator.log")
        wait_http(f"{self.sim_url}/_sim/health", 60)

    def hub_start(self, extra_env: dict[str, str]) -> list[int]:
        launcher = [str(ROOT / "bench" / "memprobe.py")] if self.args.memprobe else ["-m", "uvicorn"]
        command = [PYTHON, *launcher, "pam.asgi:application", "--host", "127.0.0.1"]
        command += ["--port", str(self.args.hub_port), "--workers", str(self.args.workers), "--backlog", "8192"]
        command += ["--no-access-log", "--log-level", "warning", "--lifespan", "on"]
        extra_env = {**extra_env, "MEMPROBE_OUT": str(self.memprobe_out)}
        self.hub = self._spawn(command, self.args.hub_cpus, {**self.env(), **extra_env}, "hub.log")
        wait_http(f"{self.url}/api/v1/health", 180)
        return worker_pids(self.hub.pid, self.args.workers)

    def floor_start(self, floor: str, harness: Path) -> list[int]:
        """A floor in the hub's place, on its port and cores (``--floor``): ``relay``, the bare
        uvicorn + aiohttp relay (bench/relayfloor.py); ``sdk``, the same through the openai SDK
        (bench/sdkfloor.py); ``stack`` and ``stack-drf``, the shared harness's bare Django view
        (or naive DRF view) with one official-SDK call."""
        port = str(self.args.hub_port)
        if floor == "relay":
            command = [PYTHON, str(ROOT / "bench" / "relayfloor.py"), "--port", port, "--upstream", self.sim_url]
        elif floor == "sdk":
            command = [PYTHON, str(ROOT / "bench" / "sdkfloor.py"), "--port", port]
            command += ["--upstream", f"{self.sim_url}/openai/v1"]
        else:
            command = [PYTHON, str(harness / "stack_floor_app.py"), "--port", port]
            command += ["--upstream", f"{self.sim_url}/openai"] + (["--drf"] if floor == "stack-drf" else [])
        if port_open("127.0.0.1", self.args.hub_port):  # a leftover server would be measured instead
            raise RuntimeError(f"port {self.args.hub_port} is taken: stop what listens there or use --hub-port")
        log = f"floor-{floor}.log"
        self.hub = floor_process = self._spawn(command, self.args.hub_cpus, self.env(), log)
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", self.args.hub_port):
            if floor_process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {floor} floor did not start: see {self.logs / log}")
            time.sleep(0.2)
        return [floor_process.pid]

    def env(self) -> dict[str, str]:
        """The hub's environment: its database and Redis, the SDKs pointed at the simulator."""
        from modelhub.management.commands.simupstream import env_lines

        env = {**os.environ, "DATABASE_URL": self.args.database_url, "REDIS_URL": self.args.redis_url}
        env.update(line.split("=", 1) for line in env_lines("127.0.0.1", self.args.sim_port))
        env.update(dict.fromkeys(KEY_VARIABLES, SIM_KEY))
        return env

    def _spawn(self, command: list[str], cpus: str, env: dict, log: str) -> subprocess.Popen:
        pinned = ["taskset", "-c", cpus, *command] if cpus else command
        with open(self.logs / log, "ab") as output:
            process = subprocess.Popen(pinned, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def memprobe(self, label: str, signum: int = signal.SIGUSR1) -> None:
        """Ask the hub (started with --memprobe) for a memory report; wait until it is written."""
        out = self.memprobe_out
        with open(out, "a") as notes:
            notes.write(f"# {label}\n")
        size = out.stat().st_size
        os.kill(self.hub.pid, signum)
        deadline = time.monotonic() + 120
        while out.stat().st_size == size and time.monotonic() < deadline:
            time.sleep(0.2)

    def sim_control(self, method: str, path: str, body: dict | None = None):
        return http_json(method, f"{self.sim_url}/_sim/{path}", body)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (the hub drains and writes its last ledger rows), then SIGKILL after 15 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (OSError, urllib.error.URLError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer: {exc}") from None
            time.sleep(0.2)


def port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


def http_json(method: str, url: str, body: dict | None = None):
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())


# -- database --


def django_setup(database_url: str, redis_url: str) -> None:
    os.environ["DATABASE_URL"], os.environ["REDIS_URL"] = database_url, redis_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pam.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def database_prepare(database_url: str) -> None:
    """Create the PostgreSQL database if it is missing, then migrate (which seeds the catalog)."""
    from django.core.management import call_command
    from django.db import connection

    if database_url.startswith("postgres"):
        import psycopg

        name = connection.settings_dict["NAME"]
        admin = {
            k: v for k, v in connection.get_connection_params().items() if k in ("host", "port", "user", "password")
        }
        with psycopg.connect(dbname="postgres", autocommit=True, **admin) as pg:
            if not pg.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                pg.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0)


def seed(primary: str, fallback: str) -> tuple[str, int]:
    """Route ``load`` = [primary, fallback] (catalog models), both healthy; a fresh key."""
    from modelhub.models import AIModel, ApiKey, ModelHealth, Route, RouteEntry
    from modelhub.services import api_key_create

    models = [AIModel.objects.get(model_id=model_id) for model_id in (primary, fallback)]
    route, _ = Route.objects.get_or_create(name=ROUTE)
    route.entries.all().delete()
    for position, model in enumerate(models):
        RouteEntry.objects.create(route=route, model=model, position=position)
    ModelHealth.objects.filter(model__in=models).delete()
    ApiKey.objects.filter(name=ROUTE).update(is_active=False)
    key, secret = api_key_create(name=ROUTE)
    return secret, key.pk


def ledger_rows(key_id: int) -> dict[str, int]:
    """Usage rows of the key, by outcome."""
    from django.db import connections
    from django.db.models import Count

    from modelhub.models import UsageRecord

    try:
        rows = UsageRecord.objects.filter(api_key_id=key_id).values_list("outcome").annotate(n=Count("id"))
        return dict(rows)
    finally:
        connections.close_all()

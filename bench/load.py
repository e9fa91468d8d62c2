"""Load and soak: bursts of N concurrent paced streams through the hub, or a long run at a
steady concurrency with injected faults. See bench/README.md ("Load and soak").

    .venv/bin/python bench/load.py                       # bursts of 100, 500, 1000, 2000 streams
    .venv/bin/python bench/load.py --workers 2           # what a second worker adds
    .venv/bin/python bench/load.py --max-inflight 1000 --bursts 2000   # twice the limit: quick 503s
    .venv/bin/python bench/load.py --soak 30m            # half capacity, 1% faults (bench/soak.sh)
    .venv/bin/python bench/load.py --profile             # py-spy on the hub during the largest burst
    .venv/bin/python bench/load.py --floor sdk           # the same bursts through a floor instead

It starts the simulator (every model paced: --chunks 50 --interval-ms 30) and the hub (uvicorn,
PostgreSQL + Redis, pinned to --hub-cpus) itself, or targets a running hub (--target URL --key KEY
[--hub-pid PID]). Per burst it reports errors, first byte p50/p99, total time, the hub's CPU per
relayed chunk (/proc utime+stime before and after, over the content chunks the clients got), RSS
and open fds before / at peak / --settle seconds after, and whether the ledger holds one ok row per
stream answered and one row per upstream call."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadkit import ROOT, ROUTE, Stack, database_prepare, django_setup, ledger_rows, seed, total_stats
from loadprofile import Profiler
from loadreport import BurstRow, SoakSample, percentile, soak_summary, table, tsv_append

PRIMARY, FALLBACK = "gpt-4o-mini", "claude-haiku-4-5-20250514"  # catalog models on two wire formats
FLOORS = ("relay", "sdk", "stack", "stack-drf")
HARNESS = Path(os.environ.get("HARNESS") or Path(__file__).resolve().parent.parent.parent / "shared" / "bench")
CAPACITY = 250  # paced streams one worker relays on one core today (README, "Load and soak")


@dataclass(frozen=True)
class Endpoint:
    path: str
    body: bytes
    content: bytes  # marks one content event
    end: bytes  # marks a stream that ended well
    empty: bytes = b""  # marks an event with empty content (the opening one)

    def content_count(self, raw: bytes) -> int:
        """Content events with content: a relayed stream's opening event has none."""
        return raw.count(self.content) - (raw.count(self.empty) if self.empty else 0)


ENDPOINTS = {
    "openai": Endpoint(
        "/v1/chat/completions",
        orjson.dumps({"model": ROUTE, "messages": [{"role": "user", "content": "Count for me"}], "stream": True}),
        b'"content":"',
        b"data: [DONE]",
        b'"content":""',
    ),
    "native": Endpoint(
        "/api/v1/pam/chat",
        orjson.dumps({"route": ROUTE, "message": "Count for me", "stream": True}),
        b"event: delta",
        b"event: done",
    ),
}


@dataclass(slots=True)
class Result:
    status: int = 0
    first_byte: float | None = None  # seconds from starting the request to the first body bytes
    written: float | None = None  # seconds from starting the request to writing it
    elapsed: float = 0.0
    chunks: int = 0
    complete: bool = False
    error: str | None = None

    def outcome(self, expected_chunks: int) -> str:
        if self.error:
            return self.error
        if self.status != 200:
            return f"http_{self.status}"
        return "ok" if self.complete and self.chunks == expected_chunks else "cut"


class Client:
    """Streams against the hub; one aiohttp session (one connection per concurrent stream)."""

    def __init__(self, url: str, key: str, endpoint: Endpoint):
        self.url, self.endpoint = url + endpoint.path, endpoint
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        connector = aiohttp.TCPConnector(limit=0)
        traces = aiohttp.TraceConfig()
        traces.on_request_chunk_sent.append(_request_written)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=300), trace_configs=[traces]
        )
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    async def stream(self) -> Result:
        result, parts, started = Result(), [], time.perf_counter()
        try:
            post = self.session.post(
                self.url, data=self.endpoint.body, headers=self.headers, trace_request_ctx=(result, started)
            )
            async with post as response:
                result.status = response.status
                async for data in response.content.iter_any():
                    if result.first_byte is None:
                        result.first_byte = time.perf_counter() - started
                    parts.append(data)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            result.error = type(exc).__name__
        result.elapsed = time.perf_counter() - started
        raw = b"".join(parts)
        result.chunks, result.complete = self.endpoint.content_count(raw), self.endpoint.end in raw
        return result


async def _request_written(session, context, params) -> None:
    """aiohttp hands the request's headers and its one body chunk to the socket right after
    this signal (the headers' own signal comes before they are even serialised)."""
    result, started = context.trace_request_ctx
    result.written = time.perf_counter() - started


class Sampler:
    """The hub's CPU, RSS and fds now, and the peaks since ``start``."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.peak_rss = self.peak_fds = 0
        self._task: asyncio.Task | None = None

    def now(self):
        return total_stats(self.pids) if self.pids else None

    def start(self, every: float = 0.1) -> None:
        self.peak_rss = self.peak_fds = 0
        self._task = asyncio.ensure_future(self._sample(every))

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _sample(self, every: float) -> None:
        while self.pids:
            stats = total_stats(self.pids)
            self.peak_rss, self.peak_fds = max(self.peak_rss, stats.rss_kib), max(self.peak_fds, stats.fds)
            await asyncio.sleep(every)


class Run:
    """One run's bursts or soak against one hub."""

    def __init__(self, args, url: str, key: str, key_id: int | None, pids: list[int], stack: Stack | None):
        self.args, self.url, self.key, self.key_id, self.stack = args, url, key, key_id, stack
        self.endpoint = ENDPOINTS[args.endpoint]
        if args.floor:  # the model the relay floor asks for; the harness's floor asks for 16 tokens unless told
            body = {**orjson.loads(self.endpoint.body), "model": PRIMARY, "max_tokens": 4096}
            self.endpoint = replace(self.endpoint, body=orjson.dumps(body))
        self.sampler = Sampler(pids)
        self.profiler = Profiler(pids[0], ROOT / "bench" / "results") if args.profile and pids else None

    async def warm_up(self) -> None:
        """Connections, SDK clients and the snapshot made; the warm-up's ledger rows written."""
        async with Client(self.url, self.key, self.endpoint) as client:
            results = [r for _ in range(2) for r in await asyncio.gather(*(client.stream() for _ in range(20)))]
        await self.ledger_settle({}, 0 if self.stack else None, len(results))

    async def bursts(self) -> list[BurstRow]:
        rows = []
        for n in self.args.bursts:
            rows.append(await self.burst(n, profile=self.profiler is not None and n == max(self.args.bursts)))
            print(table([rows[-1]]), flush=True)
        return rows

    async def burst(self, n: int, profile: bool) -> BurstRow:
        # This client's own heap frozen first: what earlier bursts left behind is not
        # traversed by its collector while this one is timed.
        gc.collect()
        gc.freeze()
        before, upstream_before, ledger_before = self.sampler.now(), self.upstream_calls(), await self.ledger()
        side_before = self.side_cpu()
        self.memprobe(f"before burst {n}")
        self.sampler.start()
        if profile:
            self.profiler.start(f"burst{n}")
        started = time.perf_counter()
        async with Client(self.url, self.key, self.endpoint) as client:
            probe = asyncio.ensure_future(self.recovery(client, started)) if self.args.max_inflight else None
            results = await asyncio.gather(*(client.stream() for _ in range(n)))
            total = time.perf_counter() - started
            recovered, probes = await probe if probe else (None, [])
        if profile:
            self.profiler.stop()
        answered = sum(r.outcome(self.args.chunks) == "ok" for r in results + probes)
        ledger, upstream = await self.ledger_settle(ledger_before, upstream_before, answered)
        after_run, side = self.sampler.now(), self.side_cpu() - side_before
        await self.sampler.stop()
        self.memprobe(f"burst {n} done")
        await asyncio.sleep(self.args.settle)
        self.memprobe(f"burst {n} + {self.args.settle:g} s")
        row = self.burst_row(n, results, total, before, after_run, self.sampler.now(), ledger, upstream, recovered)
        row.side_cpu_s = side
        return row

    def memprobe(self, label: str) -> None:
        if self.args.memprobe and self.stack:
            self.stack.memprobe(label)

    def side_cpu(self) -> float:
        """CPU seconds of the simulator and of this client so far."""
        simulator = total_stats([self.stack.processes[0].pid]).cpu_s if self.stack else 0.0
        return simulator + time.process_time()

    def burst_row(self, n, results, total, before, after_run, settled, ledger, upstream, recovered) -> BurstRow:
        outcomes = Counter(r.outcome(self.args.chunks) for r in results)
        served = [r.first_byte for r in results if r.status == 200 and r.first_byte is not None]
        ttfb = [r.first_byte - r.written for r in results if r.status == 200 and None not in (r.first_byte, r.written)]
        refused = [r.elapsed for r in results if r.status in (429, 503)]
        chunks = sum(r.chunks for r in results if r.status == 200)
        cpu = after_run.cpu_s - before.cpu_s if before else None
        return BurstRow(
            n=n,
            ok=outcomes.pop("ok", 0),
            errors=dict(outcomes),
            first_byte=(percentile(served, 50), percentile(served, 99)),
            ttfb_p99=percentile(ttfb, 99),
            total_s=total,
            cpu_s=cpu,
            chunks=chunks,
            rss_mib=_mib(before, self.sampler.peak_rss, settled),
            fds=(before.fds, self.sampler.peak_fds, settled.fds) if before else None,
            ledger=ledger,
            upstream=upstream,
            refused_p99=percentile(refused, 99),
            recovered_s=recovered,
        )

    async def recovery(self, client: Client, started: float) -> tuple[float | None, list[Result]]:
        """While a burst is refused in part: seconds from its start until a new stream is
        answered (one try every 0.25 s, each read to its end), and the tries."""
        probes: list[Result] = []
        while time.perf_counter() - started < 60:
            await asyncio.sleep(0.25)
            probes.append(await client.stream())
            if probes[-1].status == 200:
                return time.perf_counter() - started, probes
        return None, probes

    def upstream_calls(self) -> int | None:
        return self.stack.sim_control("GET", "stats")["calls"] if self.stack else None

    async def ledger(self) -> dict[str, int]:
        return await asyncio.to_thread(ledger_rows, self.key_id) if self.key_id else {}

    async def ledger_settle(self, before: dict, upstream_before: int | None, answered: int):
        """(ok rows, all rows) the burst added once the ledger writer caught up with the upstream's
        count of calls (or the answered streams), and (answered, upstream calls)."""
        if not self.key_id:
            return None, None
        upstream = self.upstream_calls() - upstream_before if upstream_before is not None else None
        deadline = time.monotonic() + 30
        while True:
            rows = await self.ledger()
            added = {k: v - before.get(k, 0) for k, v in rows.items()}
            total, ok = sum(added.values()), added.get("ok", 0)
            caught_up = ok >= answered and (upstream is None or total >= upstream)
            if caught_up or time.monotonic() > deadline:
                return (answered, ok, total), upstream
            await asyncio.sleep(0.25)

    async def soak(self) -> None:
        args = self.args
        end = time.monotonic() + args.soak
        if self.stack and args.fault_rate:
            self.stack.sim_control("POST", "faults", {"model": PRIMARY, "status": 500, "rate": args.fault_rate})
            cut = {"model": FALLBACK, "cut_after_chunks": args.chunks // 5, "rate": args.fault_rate}
            self.stack.sim_control("POST", "faults", cut)
        ledger_before, upstream_before = await self.ledger(), self.upstream_calls()
        window: list[Result] = []
        everything: Counter[str] = Counter()
        samples: list[SoakSample] = []
        async with Client(self.url, self.key, self.endpoint) as client:

            async def loop() -> None:
                while time.monotonic() < end:
                    window.append(await client.stream())

            loops = [asyncio.ensure_future(loop()) for _ in range(args.concurrency)]
            started, last, last_at = time.monotonic(), self.sampler.now(), 0.0
            while not all(task.done() for task in loops):
                await asyncio.wait(loops, timeout=args.sample)
                at, stats, taken = time.monotonic() - started, self.sampler.now(), window[:]
                window.clear()
                everything.update(r.outcome(args.chunks) for r in taken)
                samples.append(SoakSample.of(at, at - last_at, taken, args.chunks, last, stats))
                print(samples[-1].line(), flush=True)
                last, last_at = stats, at
        answered = everything.get("ok", 0)
        ledger, upstream = await self.ledger_settle(ledger_before, upstream_before, answered)
        print(soak_summary(samples, everything, ledger, upstream))


def _mib(before, peak_kib: int, settled):
    return (before.rss_kib / 1024, peak_kib / 1024, settled.rss_kib / 1024) if before else None


def duration(text: str) -> float:
    """'30m', '90s', '1h' or seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bursts", default="100,500,1000,2000", help="concurrent streams per burst")
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="openai")
    parser.add_argument("--chunks", type=int, default=50, help="content chunks per paced answer")
    parser.add_argument("--interval-ms", type=float, default=30, help="between two chunks")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers")
    parser.add_argument("--max-inflight", type=int, default=0, help="MODELHUB_MAX_INFLIGHT for the hub (0: off)")
    parser.add_argument("--settle", type=float, default=60, help="seconds after a burst before 'after' figures")
    parser.add_argument("--soak", type=duration, default=0, help="soak for this long instead of bursts (30m)")
    parser.add_argument("--concurrency", type=int, default=CAPACITY // 2, help="streams in flight during a soak")
    parser.add_argument("--fault-rate", type=float, default=0.01, help="share of upstream calls faulted (soak)")
    parser.add_argument("--sample", type=float, default=30, help="seconds between soak samples")
    parser.add_argument("--profile", action="store_true", help="py-spy the hub during the largest burst")
    parser.add_argument(
        "--memprobe", action="store_true", help="memory reports (bench/memprobe.py) around each burst; 1 worker"
    )
    parser.add_argument("--hub-env", action="append", default=[], metavar="VAR=VALUE", help="more hub settings")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/modelhub_load")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--hub-port", type=int, default=8310)
    parser.add_argument("--sim-port", type=int, default=8311)
    parser.add_argument("--hub-cpus", help="taskset list for the hub (default 0; with --workers > 1 not pinned)")
    parser.add_argument("--side-cpus", default="1", help="taskset list for the simulator")
    parser.add_argument("--client-cpus", help="CPUs for this load client (default: --side-cpus; 'any': not pinned)")
    parser.add_argument(
        "--floor",
        choices=FLOORS,
        help="start a floor in the hub's place: relay (uvicorn + aiohttp only), sdk (uvicorn + the openai SDK), "
        "stack (a bare Django view + one SDK call), stack-drf (the same in a naive DRF view); no ledger",
    )
    parser.add_argument("--harness", type=Path, default=HARNESS, help="the shared bench (stack_floor_app.py)")
    parser.add_argument("--target", help="URL of a running hub to load instead of starting one")
    parser.add_argument("--key", help="API key for --target")
    parser.add_argument("--hub-pid", type=int, action="append", default=[], help="--target's worker pids")
    args = parser.parse_args(argv)
    args.bursts = [int(n) for n in args.bursts.split(",") if n]
    if args.target and not args.key:
        parser.error("--target needs --key")
    if args.memprobe and args.workers > 1:
        parser.error("--memprobe reports on one worker")
    if args.floor and (args.target or args.workers > 1 or args.memprobe or args.soak):
        parser.error("--floor is one process of its own: not with --target, --workers, --memprobe or --soak")
    if args.floor and (args.max_inflight or args.hub_env):
        parser.error("--max-inflight and --hub-env set the hub: a floor has neither")
    if args.floor and args.endpoint != "openai":
        parser.error("--floor serves the OpenAI-compatible endpoint only")
    if args.floor in ("stack", "stack-drf") and not (args.harness / "stack_floor_app.py").is_file():
        parser.error(f"--floor {args.floor}: no stack_floor_app.py in {args.harness} (--harness)")
    if args.hub_cpus is None:
        args.hub_cpus = "0" if args.workers == 1 else ""
    # Keep this client off the hub's core: unpinned, the scheduler now and then ran it beside
    # the hub (bench/README.md, "The client's core").
    client_cpus, option = (
        (args.side_cpus, "--side-cpus") if args.client_cpus is None else (args.client_cpus, "--client-cpus")
    )
    allowed = os.sched_getaffinity(0)
    if client_cpus in ("", "any"):
        args.client_cpus = allowed
    else:
        try:
            args.client_cpus = cpu_set(client_cpus)
        except ValueError:
            parser.error(f"{option}: {client_cpus!r} is not a CPU list such as 1 or 0,2-3 (for this client)")
        if not args.client_cpus <= allowed:
            parser.error(f"{option}: {client_cpus!r} names CPUs this process may not use ({sorted(allowed)})")
    return args


def cpu_set(text: str) -> set[int]:
    """'1', '0-3', '0,2-3' -> the CPUs; ValueError for anything else."""
    chosen: set[int] = set()
    for part in text.split(","):
        low, dash, high = part.partition("-")
        first, last = int(low), int(high if dash else low)
        if first < 0 or last < first:
            raise ValueError(part)
        chosen.update(range(first, last + 1))
    return chosen


def hub_env(args) -> dict[str, str]:
    env = {"MODELHUB_MAX_INFLIGHT": str(args.max_inflight)}
    if args.soak:
        env["MODELHUB_COOLDOWN_SECONDS"] = "2"  # faults flip the circuit breaker often, both chains stay in use
    env.update(item.split("=", 1) for item in args.hub_env)
    return env


async def measure(run: Run, args) -> None:
    await run.warm_up()
    if args.soak:
        return await run.soak()
    rows = await run.bursts()
    if args.memprobe and run.stack:
        run.stack.memprobe("malloc_trim", signal.SIGUSR2)
    served = f"floor {args.floor} (no hub)" if args.floor else f"{args.endpoint} endpoint, {args.workers} worker(s)"
    print(f"\n{served}, {args.chunks} chunks {args.interval_ms:g} ms apart")
    print(table(rows))
    tsv_append(ROOT / "bench" / "results" / "load.tsv", rows, args)


def main(argv=None) -> None:
    args = parse_args(argv)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    uvloop_install()
    if args.target:
        collector_quiet()
        os.sched_setaffinity(0, args.client_cpus)
        return asyncio.run(measure(Run(args, args.target, args.key, None, args.hub_pid, None), args))
    django_setup(args.database_url, args.redis_url)
    logs = ROOT / "bench" / "results" / f"load-{time.strftime('%Y%m%d-%H%M%S')}"
    logs.mkdir()
    if args.floor:
        key, key_id = "floor", None  # no keys, no ledger
    else:
        database_prepare(args.database_url)
        key, key_id = seed(PRIMARY, FALLBACK)
    with Stack(args, logs) as stack:
        stack.simulator_start(f"*={args.chunks}x{args.interval_ms:g}")
        pids = stack.floor_start(args.floor, args.harness) if args.floor else stack.hub_start(hub_env(args))
        served_by = f"floor {args.floor}" if args.floor else "hub workers"
        print(f"{served_by} {pids} on cpus {args.hub_cpus or 'any'}; logs in {logs}", flush=True)
        collector_quiet()
        os.sched_setaffinity(0, args.client_cpus)  # after the hub and the simulator started: they would inherit it
        asyncio.run(measure(Run(args, stack.url, key, key_id, pids, stack), args))


def collector_quiet() -> None:
    """Thousands of streams in this client too: its garbage collector must not delay what
    it times (what is loaded is frozen; collections come 100x less often)."""
    gc.freeze()
    gc.set_threshold(70_000, 10, 10)


def uvloop_install() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _exit_on_sigterm(signum, frame) -> None:
    sys.exit(128 + signum)  # unwinds: Stack stops the hub and the simulator it started


if __name__ == "__main__":
    os.chdir(ROOT)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    main()

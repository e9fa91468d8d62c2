"""What observing a request costs the chat path: CPU microseconds per request for its
Prometheus metrics and its log lines, side by side in one run, over the router's own
recording (``Failover.record`` / ``answered``: the ledger row, the breaker), which is the
floor every variant shares.

Two request shapes: answered by the primary (one attempt), and one failover (a 500, then
the fallback answers: two attempts, and the breaker's line). Variants: nothing
(metrics recorded into a no-op, logs off) / metrics / metrics + plain log lines / metrics +
JSON log lines, in this process (one process's counters) and, in a child process, with
``PROMETHEUS_MULTIPROC_DIR`` set (every value an mmap write). Log lines go to a file, as a
server's stderr goes to a journal or a pipe.

    .venv/bin/python bench/observe.py                    # 5 rounds of 20,000 requests each
    .venv/bin/python bench/observe.py --requests 50000 --rounds 7
"""

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pam.settings")
os.environ["DATABASE_URL"] = "sqlite://:memory:"  # nothing is stored; no spool beside a database
os.environ["REDIS_URL"] = ""

import django  # noqa: E402

django.setup()


from modelhub.observability import events  # noqa: E402
from modelhub.observability.logs import JsonFormatter, PlainFormatter, RequestIdFilter  # noqa: E402
from modelhub.observability.metrics import hub_metrics, hub_metrics_reset  # noqa: E402
from modelhub.providers.base import ErrorKind, ModelSpec, ProviderError, ProviderSpec  # noqa: E402
from modelhub.routing.router import Failover, Success  # noqa: E402
from modelhub.routing.snapshot import RouteSpec  # noqa: E402
from modelhub.routing.strategies import Choice  # noqa: E402
from modelhub.runtime import runtime, runtime_reset  # noqa: E402

VARIANTS = ("nothing", "metrics", "metrics + plain logs", "metrics + JSON logs")
SHAPES = ("primary answers", "one failover")


def model(pk: int, model_id: str, provider: str) -> ModelSpec:
    spec = ProviderSpec(provider, provider, None, "KEY", "not-a-key", 30.0)
    return ModelSpec(pk, model_id, model_id, spec, 200_000, 8192, Decimal("3"), Decimal("15"))


PRIMARY, FALLBACK = model(1, "claude-sonnet-4-5", "anthropic"), model(2, "gpt-4o-mini", "openai")
ROUTE = RouteSpec(name="pam", enabled=True, chain=(PRIMARY, FALLBACK))
SERVER_ERROR = ProviderError(ErrorKind.SERVER, "HTTP 500: upstream failed", status=500)


def request(shape: str, number: int) -> None:
    """One request's recording as the router does it, minus the provider calls."""
    failover = Failover(ROUTE, key=None, request_id=f"{number:032x}", choice=Choice(ROUTE))
    started = time.perf_counter()
    if shape == "one failover":
        failover.failed(PRIMARY, 0, SERVER_ERROR, started)
        failover.failing_over(failover.attempts[-1])
        failover.answered(Success(None, FALLBACK, 1, started), (812, 164))
    else:
        failover.answered(Success(None, PRIMARY, 0, started), (812, 164))


class NoMetrics:
    """Takes every recording call and does nothing: the floor without metrics."""

    def __getattr__(self, name):
        return self

    def __call__(self, *args, **kwargs):
        return self


def variant_set(variant: str, handler: logging.Handler) -> None:
    events.hub_metrics = (lambda: NoMetrics()) if variant == "nothing" else hub_metrics  # type: ignore[assignment,return-value]
    logger = logging.getLogger("modelhub")
    logger.handlers = [handler] if "logs" in variant else []
    logger.setLevel(logging.INFO if "logs" in variant else logging.CRITICAL + 1)
    logger.propagate = False
    handler.setFormatter(JsonFormatter() if "JSON" in variant else PlainFormatter())


class FlushedLedger:
    """The ledger as its writer thread keeps it in a server: the queue emptied four times a
    second, so a few hundred rows alive at a time (not every row of the run, which would
    make the garbage collector's passes, and so every allocation, dearer as the run goes)."""

    def __init__(self):
        self.rows: deque = deque(maxlen=500)

    def submit_usage(self, record) -> None:
        self.rows.append(record)

    def submit_health(self, model_pk, health) -> None:
        self.rows.append(health)


def cpu_us_per_request(shape: str, variant: str, count: int, handler: logging.Handler) -> float:
    runtime_reset()  # a fresh health board each time
    runtime().__dict__["ledger"] = FlushedLedger()
    variant_set(variant, handler)
    for n in range(200):  # warm: the labelled children exist, the breaker has the primary out
        request(shape, n)
    started = time.process_time()
    for n in range(count):
        request(shape, n)
    return (time.process_time() - started) / count * 1e6


def measure(count: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median CPU µs per request for each shape and variant, rounds interleaved."""
    samples: dict[str, dict[str, list[float]]] = {s: {v: [] for v in VARIANTS} for s in SHAPES}
    with tempfile.NamedTemporaryFile("w", prefix="observe-", suffix=".log") as log_file:
        handler = logging.StreamHandler(log_file)
        handler.addFilter(RequestIdFilter())
        for _ in range(rounds):
            for shape in SHAPES:
                for variant in VARIANTS:
                    samples[shape][variant].append(cpu_us_per_request(shape, variant, count, handler))
                    log_file.truncate(0)
                    log_file.seek(0)
    hub_metrics_reset()
    return {s: {v: statistics.median(found) for v, found in by.items()} for s, by in samples.items()}


def table(title: str, results: dict[str, dict[str, float]]) -> str:
    lines = [f"{title}: CPU µs per request, median (added over 'nothing' in brackets)"]
    lines.append(f"  {'':<24}" + "".join(f"{shape:>24}" for shape in SHAPES))
    for variant in VARIANTS:
        cells = []
        for shape in SHAPES:
            value, floor = results[shape][variant], results[shape]["nothing"]
            cells.append(f"{value:>14.1f}" + (f" (+{value - floor:5.1f})" if variant != "nothing" else " " * 9))
        lines.append(f"  {variant:<24}" + "".join(cells))
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON (the child's output)")
    args = parser.parse_args(argv)
    results = measure(args.requests, args.rounds)
    if args.json:
        print(json.dumps(results))
        return
    with tempfile.TemporaryDirectory(prefix="observe-prometheus-") as directory:
        child = subprocess.run(
            [sys.executable, __file__, "--requests", str(args.requests), "--rounds", str(args.rounds), "--json"],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory},
            capture_output=True,
            text=True,
            check=True,
        )
    print(f"{args.requests} requests x {args.rounds} rounds")
    print(table("one process", results))
    print(table("PROMETHEUS_MULTIPROC_DIR (several workers)", json.loads(child.stdout)))


if __name__ == "__main__":
    main()

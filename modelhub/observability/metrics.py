"""Prometheus metrics, named after the OpenTelemetry GenAI conventions where one exists
(``gen_ai.client.operation.duration`` is ``gen_ai_client_operation_duration_seconds`` here,
with the conventions' bucket boundaries), and the hub's own besides.

Labels are bounded: a route and a model name come from the registry (the router's snapshot),
never from the caller, so a request naming an unknown route or model makes no series; an
outcome is "ok", an ErrorKind value or "client_disconnected" (a request that called no model
at all: "skipped"). A request on a bare model id has route "". Probes are counted apart
(``modelhub_probes_total``): they are the hub's calls, not its clients'.

Several processes (``uvicorn --workers N``, Celery's pool) share their counts through the
directory named by ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode,
chosen when that variable is set before the first metric exists). Each process joins the
directory once (``multiproc_join``): the first process of a run (no other one alive) empties
what a previous run left; a dead process's live gauges are dropped (``mark_process_dead``)
while its counts stay in the totals. Without the variable, each process counts for itself
(the embedded default runs one).

Recording costs a few microseconds an attempt: the labelled children of each (route,
provider, model, outcome) are looked up once and kept (``bench/observe.py``)."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from ..routing.health import COOLING_DOWN, HALF_OPEN, HEALTHY

log = logging.getLogger("modelhub.observability")

# OpenTelemetry's ExplicitBucketBoundaries for the GenAI client metrics.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TOKEN_BUCKETS = tuple(4**n for n in range(14))  # 1, 4, 16, ... 67108864
LABELS = ("route", "provider", "model", "outcome")
STATES = (HEALTHY, HALF_OPEN, COOLING_DOWN)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_MARKER = re.compile(r"live-(\d+)\.lock$")


class HubMetrics:
    """The hub's metrics in a registry of their own, and the labelled children already
    looked up (one dictionary lookup per attempt instead of one ``labels()`` per metric)."""

    def __init__(self):
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("modelhub_requests", "Chat requests by how they ended.", LABELS, registry=registry)
        self.request_duration = Histogram(
            "modelhub_request_duration_seconds",
            "Chat requests from routing to the answer's end, failovers included.",
            LABELS,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.attempts = Counter(
            "modelhub_attempts", "Calls to models (attempts), failed ones included.", LABELS, registry=registry
        )
        self.duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "One call to a model (an attempt), to its last byte.",
            LABELS,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "A streamed call's time to its first content.",
            LABELS,
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.tokens = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per call, by token_type (input | output); the _sum is the token count.",
            ("route", "provider", "model", "token_type"),
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.cost = Counter(
            "modelhub_cost_usd",
            "Cost of the calls (USD), from provider-reported tokens.",
            LABELS[:3],
            registry=registry,
        )
        self.failovers = Counter(
            "modelhub_failovers",
            "Moves to the next model; model and outcome are those of the model failed over from.",
            LABELS,
            registry=registry,
        )
        self.probes = Counter("modelhub_probes", "Health probes by outcome.", LABELS[1:], registry=registry)
        self.inflight = Gauge(
            "modelhub_inflight_requests",
            "Chat requests being answered.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.overloaded = Counter(
            "modelhub_overloaded", "Chat requests refused at the in-flight limit (503).", registry=registry
        )
        self._attempt_children: dict[tuple, tuple] = {}
        self._request_children: dict[tuple, tuple] = {}

    def attempt(self, key: tuple[str, str, str, str], seconds: float, ttft: float | None, tokens, cost: float) -> None:
        """One attempt: ``key`` is (route, provider, model, outcome); ``tokens`` (in, out)."""
        children = self._attempt_children.get(key)
        if children is None:
            children = self._attempt_children[key] = self._attempt_labelled(key)
        attempts, duration, ttft_histogram, tokens_in, tokens_out, cost_counter = children
        attempts.inc()
        duration.observe(seconds)
        if ttft is not None:
            ttft_histogram.observe(ttft)
        tokens_in.observe(tokens[0])
        tokens_out.observe(tokens[1])
        if cost:
            cost_counter.inc(cost)

    def _attempt_labelled(self, key: tuple[str, str, str, str]) -> tuple:
        route, provider, model, _ = key
        return (
            self.attempts.labels(*key),
            self.duration.labels(*key),
            self.ttft.labels(*key),
            self.tokens.labels(route, provider, model, "input"),
            self.tokens.labels(route, provider, model, "output"),
            self.cost.labels(route, provider, model),
        )

    def request(self, key: tuple[str, str, str, str], seconds: float) -> None:
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (self.requests.labels(*key), self.request_duration.labels(*key))
        children[0].inc()
        children[1].observe(seconds)


class ModelStates:
    """``modelhub_model_state`` at scrape time, from the scraping process's health board:
    1 for each registry model's state, 0 for its other states (a Prometheus state set)."""

    def __init__(self, models: Iterable, state_of):
        self.models, self.state_of = models, state_of

    def collect(self):
        family = GaugeMetricFamily(
            "modelhub_model_state",
            "Each model's circuit-breaker state (1: the state it is in).",
            labels=["provider", "model", "state"],
        )
        for model in self.models:
            current = self.state_of(model)
            for state in STATES:
                family.add_metric([model.provider.name, model.model_id, state], 1.0 if state == current else 0.0)
        yield family


class Scrape:
    """What one scrape reads: any collectors, in order (``generate_latest`` needs only ``collect``)."""

    def __init__(self, *collectors):
        self.collectors = collectors

    def collect(self):
        for collector in self.collectors:
            yield from collector.collect()


def counts_source(hub: HubMetrics):
    """Where a scrape reads the counts: every process's files in multiprocess mode, else this
    process's registry."""
    directory = os.environ.get(MULTIPROC_ENV)
    return MultiProcessCollector(None, path=directory) if directory else hub.registry


# --- the shared directory ----------------------------------------------------------------

_held: dict[int, int] = {}  # pid -> the descriptor whose lock says this process is alive


def multiproc_join(directory: Path) -> None:
    """Take this process's place in the shared directory, once per process, before its first
    metric file exists. Under the directory's lock: each dead process's live gauges are
    dropped (its marker's lock was released by the kernel when it died); when no process is
    alive, the previous run's files are removed; then this process's marker is locked and
    kept open for its life."""
    pid = os.getpid()
    if pid in _held:
        return
    directory.mkdir(parents=True, exist_ok=True)
    guard = os.open(directory / "directory.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not _others_alive(directory):
            for stale in directory.glob("*.db"):
                stale.unlink(missing_ok=True)
        marker = os.open(directory / f"live-{pid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(marker, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _held[pid] = marker
    finally:
        os.close(guard)


def _others_alive(directory: Path) -> bool:
    """Whether another process holds its marker; the markers of the dead are cleared."""
    alive = False
    for marker in directory.glob("live-*.lock"):
        found = _LIVE_MARKER.search(marker.name)
        if found is None:
            continue
        if _locked_by_owner(marker):
            alive = True
        else:
            mark_process_dead(int(found[1]), str(directory))
            marker.unlink(missing_ok=True)
    return alive


def _locked_by_owner(marker: Path) -> bool:
    try:
        fd = os.open(marker, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


# --- the process's metrics -----------------------------------------------------------------

_metrics: HubMetrics | None = None
_making = threading.Lock()


def hub_metrics() -> HubMetrics:
    """This process's metrics, made on first use (joining the shared directory first)."""
    current = _metrics
    if current is None:
        current = _metrics_make()
    return current


def _metrics_make() -> HubMetrics:
    global _metrics
    with _making:
        if _metrics is None:
            directory = os.environ.get(MULTIPROC_ENV)
            if directory:
                multiproc_join(Path(directory))
            _metrics = HubMetrics()
        return _metrics


def hub_metrics_reset() -> None:
    """Forget this process's metrics (tests): the next use makes them anew, counting from 0
    (in multiprocess mode, from what the files hold)."""
    global _metrics
    _metrics = None

"""Serve the built-in simulated upstream (OpenAI, Anthropic, Gemini, OpenAI-compatible) on loopback."""

from __future__ import annotations

import gc
import ipaddress

from django.core.management.base import BaseCommand, CommandError

from modelhub.simulator import Fault, Simulator
from modelhub.simulator.pace import parse_pace
from modelhub.simulator.server import serve

ENV_PATHS = [
    ("ANTHROPIC_BASE_URL", "/anthropic"),
    ("OPENAI_BASE_URL", "/openai/v1"),
    ("GOOGLE_GEMINI_BASE_URL", "/gemini"),
    ("GROQ_BASE_URL", "/compat/v1"),
]
NAMED_FAULTS = {"hang": {"hang": True}, "malformed": {"malformed": True}, "context_length": {"error": "context_length"}}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def env_lines(host: str, port: int) -> list[str]:
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return [f"{name}={url}{path}" for name, path in ENV_PATHS]


def parse_fault(spec: str) -> tuple[str, Fault]:
    """'gpt-4o=429' -> ('gpt-4o', Fault(status=429)); also MODEL=hang|malformed|context_length;
    '@RATE' hits only that share of the calls: '*=500@0.01'."""
    model, sep, what = spec.rpartition("=")
    if not sep or not model:
        raise CommandError(f"--fault expects MODEL=STATUS[@RATE], got {spec!r}")
    what, at, rate = what.partition("@")
    try:
        fields = NAMED_FAULTS[what] if what in NAMED_FAULTS else {"status": int(what)}
        return model, Fault(**fields, rate=float(rate) if at else None)
    except ValueError as exc:
        raise CommandError(f"--fault {spec!r}: {exc}") from None


def pace_option(spec: str):
    try:
        return parse_pace(spec)
    except ValueError as exc:
        raise CommandError(f"--pace {exc}") from None


class Command(BaseCommand):
    help = "Serve the simulated upstream LLM providers on a loopback port."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8900)
        parser.add_argument(
            "--fault",
            action="append",
            default=[],
            metavar="MODEL=STATUS",
            help="fault a model (* = every model): an HTTP status, or hang / malformed / context_length; "
            "@RATE faults only that share of its calls (gpt-4o=500@0.01)",
        )
        parser.add_argument(
            "--pace",
            action="append",
            default=[],
            metavar="MODEL=CHUNKSxMS",
            help="stream a model's answers (* = every model) in CHUNKS chunks MS milliseconds apart (*=50x30)",
        )
        parser.add_argument("--latency-ms", type=int, default=0, help="delay before every answer")

    def handle(self, *args, host, port, fault, pace, latency_ms, **options):
        if not is_loopback(host):
            raise CommandError(f"refusing to serve the simulator on non-loopback host {host!r}")
        sim = Simulator()
        sim.default_latency_ms = latency_ms
        for model, model_fault in map(parse_fault, fault):
            sim.set_fault(model, model_fault)
        for model, model_pace in map(pace_option, pace):
            sim.set_pace(model, model_pace)
        for line in env_lines(host, port):
            self.stdout.write(line)
        self.stdout.flush()
        collector_quiet()
        serve(host, port, sim)


def collector_quiet() -> None:
    """Keep the cyclic garbage collector out of a load test's way: what is loaded now is
    frozen, and collections come 100x less often. Under a burst of 1,000 paced streams the
    default thresholds ran full collections of every stream in flight and of the calls kept
    for inspection (up to 100,000), 0.2-0.3 s each, during which no stream got a chunk: the
    hub's first-byte times measured the simulator."""
    gc.freeze()
    gc.set_threshold(70_000, 10, 10)

"""Serve the built-in simulated upstream (OpenAI, Anthropic, Gemini, OpenAI-compatible) on loopback."""

from __future__ import annotations

import ipaddress

from django.core.management.base import BaseCommand, CommandError

from modelhub.simulator import Fault, Simulator
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
    """'gpt-4o=429' -> ('gpt-4o', Fault(status=429)); also MODEL=hang|malformed|context_length."""
    model, sep, what = spec.rpartition("=")
    if not sep or not model:
        raise CommandError(f"--fault expects MODEL=STATUS, got {spec!r}")
    try:
        return model, Fault(**NAMED_FAULTS[what]) if what in NAMED_FAULTS else Fault(status=int(what))
    except ValueError as exc:
        raise CommandError(f"--fault {spec!r}: {exc}") from None


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
            help="fault a model: an HTTP status, or hang / malformed / context_length",
        )
        parser.add_argument("--latency-ms", type=int, default=0, help="delay before every answer")

    def handle(self, *args, host, port, fault, latency_ms, **options):
        if not is_loopback(host):
            raise CommandError(f"refusing to serve the simulator on non-loopback host {host!r}")
        sim = Simulator()
        sim.default_latency_ms = latency_ms
        for model, model_fault in map(parse_fault, fault):
            sim.set_fault(model, model_fault)
        for line in env_lines(host, port):
            self.stdout.write(line)
        self.stdout.flush()
        serve(host, port, sim)

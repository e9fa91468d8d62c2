"""What a rollout costs ``route_choose`` per request (the routing decision, no I/O): a
priority route without a rollout, with one that sends no canary traffic (shadow or paused),
and with a running canary for a caller on each arm. No database, no network.

    .venv/bin/python bench/rollouts.py            # 200,000 calls a case, 7 rounds

Each round times a case's calls together (perf_counter_ns) and prints ns per call; the last
lines are the median of the rounds, which a busy neighbour on the machine moves less."""

import argparse
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pam.settings")

import django

django.setup()

from dataclasses import replace  # noqa: E402

from modelhub.providers.base import ChatRequest, Message, ModelSpec, ProviderSpec  # noqa: E402
from modelhub.routing.snapshot import RolloutSpec, RouteSpec, Snapshot, canaries_of  # noqa: E402
from modelhub.routing.strategies import canary_bucket, route_choose  # noqa: E402

PROVIDER = ProviderSpec("p", kind="openai", base_url=None, api_key_env="K", api_key="k", timeout=30)


def model(pk: int) -> ModelSpec:
    return ModelSpec(pk, f"m{pk}", f"m{pk}", PROVIDER, 128_000, 4096, Decimal(3), Decimal(15))


def cases() -> dict[str, tuple[RouteSpec, str]]:
    stable, spare, candidate = model(1), model(2), model(3)
    route = RouteSpec("pam", True, (stable, spare))
    rollout = RolloutSpec(
        1, "pam", candidate, stable, "canary", 2, 10.0, False, 10.0, False, 50, 0.05, 1.5, 1.5, "1:canary2:0"
    )
    stable_caller = next(f"c{n}" for n in range(1000) if canary_bucket(1, f"c{n}") >= 10)
    canary_caller = next(f"c{n}" for n in range(1000) if canary_bucket(1, f"c{n}") < 10)
    return {
        "no rollout": (route, stable_caller),
        "rollout, no canary traffic (shadow)": (
            replace(route, rollout=replace(rollout, phase="shadow", weight=0.0)),
            stable_caller,
        ),
        "canary running, caller on the stable arm": (replace(route, rollout=rollout), stable_caller),
        "canary running, caller on the canary arm": (replace(route, rollout=rollout), canary_caller),
    }


def round_ns(route: RouteSpec, sticky: str, calls: int) -> float:
    routes = {"pam": route}  # as snapshot_build leaves them
    snapshot = Snapshot(version=1, loaded_at=0.0, routes=routes, canaries=canaries_of(routes))
    request = ChatRequest((Message("user", "Hi"),))
    started = time.perf_counter_ns()
    for _ in range(calls):
        route_choose(snapshot, route, request, sticky=sticky)
    return (time.perf_counter_ns() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in cases()}
    for number in range(args.rounds):
        for name, (route, sticky) in cases().items():
            results[name].append(round_ns(route, sticky, args.calls))
        print(f"round {number + 1}: " + ", ".join(f"{values[-1]:.0f}" for values in results.values()) + " ns")
    print(f"\nroute_choose, ns per call (median of {args.rounds} rounds of {args.calls:,}):")
    for name, values in results.items():
        print(f"  {name:44} {statistics.median(values):7.0f}")


if __name__ == "__main__":
    main()

"""Where the hub's CPU goes during a burst: py-spy samples the worker (``--nonblocking``: it
does not pause it), and each sample is charged to the package of its innermost frame.

    .venv/bin/python bench/loadprofile.py bench/results/profile-burst1000.txt   # summarise again"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# First match wins: the innermost frame's file (as py-spy prints it) -> where the time goes.
# Time in C (a socket write, the loop's epoll and reads) counts to the Python line calling it.
CATEGORIES = [
    ("modelhub/providers/", "hub: provider adapters"),
    ("modelhub/routing/", "hub: routing, stream relay"),
    ("modelhub/api/", "hub: API views, SSE framing"),
    ("modelhub/", "hub: other (chat, ledger, limits)"),
    ("openai/", "SDK: openai (SSE decoding)"),
    ("anthropic/", "SDK: anthropic"),
    ("google/", "SDK: google-genai"),
    ("httpx2/", "SDK transport: httpx2"),
    ("aiohttp/", "SDK transport: aiohttp"),
    ("aiohappyeyeballs/", "SDK transport: aiohttp"),
    ("uvicorn/", "server: uvicorn (socket writes)"),
    ("django/", "Django / DRF (response streaming)"),
    ("asgiref/", "Django / DRF (response streaming)"),
    ("rest_framework/", "Django / DRF (response streaming)"),
    ("adrf/", "Django / DRF (response streaming)"),
    ("asyncio/runners.py", "event loop (uvloop: epoll, socket reads)"),
    ("asyncio/", "asyncio (tasks, streams)"),
    ("json/", "stdlib json (SDK decoding)"),
    ("psycopg/", "database"),
    ("redis/", "redis"),
]


def category(frame: str) -> str:
    """'send (uvicorn/protocols/http/httptools_impl.py:544)' -> 'server: uvicorn ...'."""
    path = frame[frame.rfind("(") + 1 : frame.rfind(":")]
    for marker, name in CATEGORIES:
        if path.startswith(marker):
            return name
    return "other (stdlib)"


# Inclusive: the first marker found anywhere on a sample's stack names its phase.
PHASES = [
    ("Ledger._run", "ledger writer thread"),
    ("get_response_async", "request setup: view, auth, routing, SDK request, wait for first content"),
    ("completion_events", "relay: hub generator -> SDK stream -> aiohttp read (per chunk)"),
    ("native_events", "relay: hub generator -> SDK stream -> aiohttp read (per chunk)"),
    ("send_response", "relay: Django response loop -> uvicorn socket write (per chunk)"),
    ("data_received", "relay: upstream bytes parsed by aiohttp (per chunk)"),
    ("Runner.run", "event loop: epoll, callbacks, timers"),
]


def phase(stack: str) -> str:
    for marker, name in PHASES:
        if marker in stack:
            return name
    return "other (partial stacks)"


class Profiler:
    """py-spy record on one pid, raw (collapsed stacks) into ``out``."""

    def __init__(self, pid: int, out: Path):
        self.pid, self.out = pid, out
        self.binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.process: subprocess.Popen | None = None
        self.path: Path | None = None

    def start(self, label: str) -> None:
        self.path = self.out / f"profile-{label}.txt"
        command = [self.binary, "record", "--pid", str(self.pid), "--rate", "250", "--nonblocking"]
        command += ["--format", "raw", "--output", str(self.path)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        self.process.wait(60)
        print(summary(self.path), flush=True)


def summary(path: Path, top: int = 15) -> str:
    by_phase: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        by_phase[phase(stack)] += int(count)
        by_category[category(leaf)] += int(count)
        by_function[leaf] += int(count)
    total = sum(by_category.values()) or 1
    lines = [f"profile {path} ({total} samples)", "| phase (inclusive) | share |", "| --- | --- |"]
    lines += [f"| {name} | {n / total:.1%} |" for name, n in by_phase.most_common()]
    lines += ["", "| self time by innermost frame | share |", "| --- | --- |"]
    lines += [f"| {name} | {n / total:.1%} |" for name, n in by_category.most_common()]
    lines += ["", "| function (innermost) | share |", "| --- | --- |"]
    lines += [f"| {name} | {n / total:.1%} |" for name, n in by_function.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1])))

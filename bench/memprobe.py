"""uvicorn with a memory report on a signal, to tell why the hub's resident memory stays up
after a load (bench/load.py --memprobe starts the hub through it).

    .venv/bin/python bench/memprobe.py pam.asgi:application --port 8000    # uvicorn's arguments
    kill -USR1 <pid>   # append a report to $MEMPROBE_OUT: RSS, glibc heap, pymalloc arenas,
                       # live objects by type, and with PYTHONTRACEMALLOC=1 the top allocation sites
                       # since the previous report
    kill -USR2 <pid>   # gc.collect(), a report, malloc_trim(0), a report: what each gives back

Where the memory sits tells the cause: glibc's free bytes (``fordblks``) that malloc_trim
returns are fragmentation of the C heap; pymalloc's arenas with few blocks in use are
fragmentation of Python's own allocator; a growing count of live objects is a leak."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import sys
import tempfile
import tracemalloc
from collections import Counter

LIBC = ctypes.CDLL("libc.so.6")
OUT = os.environ.get("MEMPROBE_OUT", f"/tmp/memprobe-{os.getpid()}.txt")
_previous: list[tracemalloc.Snapshot] = []
_modules_seen: set[str] = set()


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks")
        + ("fordblks", "keepcost")
    ]


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def glibc_heap() -> str:
    LIBC.mallinfo2.restype = MallInfo2
    info = LIBC.mallinfo2()
    mib = 1024 * 1024
    return (
        f"glibc: heap {info.arena / mib:.1f} MiB (in use {info.uordblks / mib:.1f}, free {info.fordblks / mib:.1f} "
        f"in {info.ordblks} chunks), mmapped {info.hblkhd / mib:.1f} MiB"
    )


def pymalloc_arenas() -> str:
    """The arena lines of sys._debugmallocstats(), which writes to the C stderr."""
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        try:
            os.dup2(captured.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode(errors="replace")
    keep = ("# arenas allocated current", "# arenas highwater", "# bytes in allocated", "# bytes in available")
    lines = [" ".join(line.lstrip("# ").split()) for line in text.splitlines() if line.startswith(keep)]
    return "pymalloc (1 MiB arenas): " + "; ".join(lines)


def live_objects(top: int = 12) -> str:
    objects = gc.get_objects()
    counts = Counter(type(o).__name__ for o in objects).most_common(top)
    return f"gc: {len(objects)} tracked objects, {gc.get_freeze_count()} frozen; " + ", ".join(
        f"{name} {n}" for name, n in counts
    )


def modules_loaded() -> str:
    """Modules imported since the previous report: a lazy import during load leaves long-lived
    objects among the request's short-lived ones, which pins their arenas."""
    new = sorted(set(sys.modules) - _modules_seen) if _modules_seen else []
    _modules_seen.update(sys.modules)
    return f"modules: {len(sys.modules)}, new since the previous report: {', '.join(new) or '-'}"


def allocation_sites(top: int = 15) -> list[str]:
    if not tracemalloc.is_tracing():
        return []
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    if not _previous:
        _previous.append(snapshot)
        return []
    grown = [stat for stat in snapshot.compare_to(_previous[-1], "traceback") if stat.size_diff > 0]
    _previous[:] = [snapshot]
    lines = [f"grown since the previous report: {sum(s.size_diff for s in grown) / 1024:.0f} KiB"]
    for stat in grown[:top]:
        lines.append(f"  +{stat.size_diff / 1024:.1f} KiB in {stat.count_diff} blocks:")
        lines += [f"      {frame}" for frame in stat.traceback.format()[-8::2]]
    return lines


def report(label: str) -> None:
    lines = [f"== {label}: RSS {rss_mib():.1f} MiB", glibc_heap(), pymalloc_arenas(), live_objects()]
    lines.append(modules_loaded())
    lines += allocation_sites()
    with open(OUT, "a") as out:
        out.write("\n".join(lines) + "\n")


def on_report(signum, frame) -> None:
    report("report")


def on_trim(signum, frame) -> None:
    before = rss_mib()
    gc.collect()  # a full collection also empties the free lists (tuples, floats, ...)
    report(f"after gc.collect() (RSS was {before:.1f} MiB)")
    before = rss_mib()
    LIBC.malloc_trim(0)
    report(f"after malloc_trim(0) (RSS was {before:.1f} MiB)")


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, on_report)
    signal.signal(signal.SIGUSR2, on_trim)
    with contextlib.suppress(SystemExit):
        from uvicorn.main import main

        main()

"""bench/load.py's figures: one row per burst, one sample per soak interval, as tables."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def _num(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


@dataclass
class BurstRow:
    n: int
    ok: int
    errors: dict[str, int]
    first_byte: tuple[float | None, float | None]  # p50, p99 seconds (answered streams)
    total_s: float
    cpu_s: float | None  # the hub's user+system seconds over the burst and its ledger writes
    chunks: int  # content chunks the clients received
    rss_mib: tuple[float, float, float] | None  # before, peak, after --settle
    fds: tuple[int, int, int] | None
    ledger: tuple[int, int, int] | None  # streams answered, ok rows, all rows
    upstream: int | None  # calls the simulator counted
    refused_p99: float | None  # seconds to a 429/503
    recovered_s: float | None  # from the burst's start to a new stream answered (limit on)
    side_cpu_s: float | None = None  # simulator + this client
    # p99 seconds from the request written to the first byte: without the time this client
    # took to open the connection and write the request (the simulator's time is still in it)
    ttfb_p99: float | None = None

    @property
    def cpu_us_per_chunk(self) -> float | None:
        return self.cpu_s * 1e6 / self.chunks if self.cpu_s is not None and self.chunks else None

    @property
    def ledger_matches(self) -> str:
        if self.ledger is None:
            return "-"
        answered, ok_rows, rows = self.ledger
        exact = ok_rows == answered and (self.upstream is None or rows == self.upstream)
        return f"{'yes' if exact else 'NO'} ({ok_rows} ok / {answered}; {rows} rows / {_num(self.upstream, 'd')} calls)"

    def cells(self) -> list[str]:
        errors = ", ".join(f"{kind} {count}" for kind, count in sorted(self.errors.items())) or "0"
        rss = "/".join(f"{v:.0f}" for v in self.rss_mib) if self.rss_mib else "-"
        fds = "/".join(str(v) for v in self.fds) if self.fds else "-"
        return [
            str(self.n),
            str(self.ok),
            errors,
            f"{_num(self.first_byte[0])} / {_num(self.first_byte[1])}",
            _num(self.ttfb_p99),
            f"{self.total_s:.2f}",
            _num(self.cpu_us_per_chunk, ".0f"),
            _num(self.cpu_s * 1000 / self.ok if self.cpu_s is not None and self.ok else None, ".1f"),
            _num(self.side_cpu_s, ".1f"),
            rss,
            fds,
            self.ledger_matches,
            f"{_num(self.refused_p99, '.3f')} / {_num(self.recovered_s, '.1f')}",
        ]


BURST_COLUMNS = [
    "streams",
    "ok",
    "errors",
    "first byte p50 / p99 s",
    "written → first byte p99 s",
    "total s",
    "hub CPU µs/chunk",
    "hub CPU ms/stream",
    "side CPU s",
    "RSS MiB before/peak/after",
    "fds before/peak/after",
    "ledger exact",
    "refusal p99 s / recovered s",
]


def table(rows: list[BurstRow]) -> str:
    lines = [BURST_COLUMNS, ["---"] * len(BURST_COLUMNS), *(row.cells() for row in rows)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def tsv_append(path: Path, rows: list[BurstRow], args) -> None:
    header = "ts\tendpoint\tworkers\tchunks\tinterval_ms\tmax_inflight\t" + "\t".join(BURST_COLUMNS) + "\n"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    if path.exists() and path.read_text().partition("\n")[0] + "\n" != header:
        path.rename(path.with_name(f"{path.name}.{stamp}"))  # other columns: kept aside, not mixed
    with open(path, "a") as out:
        if out.tell() == 0:
            out.write(header)
        for row in rows:
            served = f"floor-{args.floor}" if getattr(args, "floor", None) else args.endpoint  # floor: no hub
            run = [stamp, served, args.workers, args.chunks, args.interval_ms, args.max_inflight]
            out.write("\t".join(map(str, run + row.cells())) + "\n")


@dataclass
class SoakSample:
    at_s: float
    streams: int
    ok: int
    first_byte_p99: float | None
    rss_mib: float | None
    fds: int | None
    cpu_share: float | None  # of one core, over the interval

    @classmethod
    def of(cls, at_s: float, interval_s: float, results: list, expected_chunks: int, before, now) -> SoakSample:
        """The streams that ended in the interval; the hub's figures at its end."""
        served = [r.first_byte for r in results if r.status == 200 and r.first_byte is not None]
        ok = sum(r.outcome(expected_chunks) == "ok" for r in results)
        if now is None:
            return cls(at_s, len(results), ok, percentile(served, 99), None, None, None)
        cpu = (now.cpu_s - before.cpu_s) / interval_s if before and interval_s > 0 else None
        return cls(at_s, len(results), ok, percentile(served, 99), now.rss_kib / 1024, now.fds, cpu)

    def line(self) -> str:
        return (
            f"t={self.at_s:7.0f}s streams={self.streams:6d} ok={self.ok:6d} "
            f"first_byte_p99={_num(self.first_byte_p99)}s hub_cpu={_num(self.cpu_share)} "
            f"rss={_num(self.rss_mib, '.1f')}MiB fds={self.fds}"
        )


def soak_summary(samples: list[SoakSample], outcomes, ledger, upstream) -> str:
    """RSS drift from the first sample (the warmed-up baseline) to the last, fd range."""
    rss = [s.rss_mib for s in samples if s.rss_mib is not None]
    fds = [s.fds for s in samples if s.fds is not None]
    lines = [f"streams {sum(outcomes.values())}: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))]
    if rss:
        drift = (rss[-1] - rss[0]) / rss[0] * 100
        lines.append(f"RSS first {rss[0]:.1f} MiB, last {rss[-1]:.1f}, max {max(rss):.1f}: drift {drift:+.1f}%")
    if fds:
        lines.append(f"fds min {min(fds)}, max {max(fds)}, first {fds[0]}, last {fds[-1]}")
    if ledger:
        answered, ok_rows, rows = ledger
        lines.append(f"ledger: {ok_rows} ok rows / {answered} answered; {rows} rows / {upstream} upstream calls")
    return "\n".join(lines)

"""What the ledger's durability costs the chat path: microseconds per ``submit_usage`` with
the spool (encode the row, one append write(2), queue it) and without it (queue only), and
per flush the spool's own work (seal the current segment, empty the stored one, which becomes
the next). No database: nothing here is flushed into one.

    .venv/bin/python bench/ledger_spool.py            # median of 5 rounds of 20,000 rows
    .venv/bin/python bench/ledger_spool.py --dir /mnt/other-disk --rows 100000
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pam.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402

from modelhub.ledger import Ledger, usage_line  # noqa: E402
from modelhub.models import UsageRecord  # noqa: E402
from modelhub.spool import Spool  # noqa: E402


def usage_row() -> UsageRecord:
    """A row as the router makes one for an answered attempt."""
    return UsageRecord(
        created_at=datetime.now(UTC),
        request_id=uuid.uuid4().hex,
        route="pam",
        provider="anthropic",
        model="claude-sonnet-4-5-20250929",
        api_key_id=1,
        input_tokens=812,
        output_tokens=164,
        cost_usd=Decimal("0.004896000000"),
        latency_ms=212,
        ttft_ms=None,
        outcome="ok",
        attempt=1,
        is_fallback=False,
        is_probe=False,
        stream=False,
        error_message="",
    )


def ledger_with(spool_dir: str) -> Ledger:
    """A ledger spooling into ``spool_dir`` ("" with an in-memory database: no spool)."""
    settings.MODELHUB = {**settings.MODELHUB, "SPOOL_DIR": spool_dir, "LEDGER_BACKGROUND": False}
    settings.DATABASES["default"] = {**settings.DATABASES["default"], "ENGINE": "django.db.backends.sqlite3"}
    settings.DATABASES["default"]["NAME"] = ":memory:"
    return Ledger()


def us_per_submit(spool_dir: str, rows: list[UsageRecord]) -> float:
    ledger = ledger_with(spool_dir)
    started = time.perf_counter()
    for row in rows:
        ledger.submit_usage(row)
    return (time.perf_counter() - started) / len(rows) * 1e6


def us_per(step, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        step()
    return (time.perf_counter() - started) / count * 1e6


def us_per_rotation(directory: Path, count: int = 2000) -> float:
    """One flush's spool work beyond its rows' appends: seal, then empty the stored segment
    (after the first two flushes, no file is created)."""
    spool = Spool(directory)
    line = usage_line(usage_row())

    def rotation():
        spool.append(line)
        spool.seal()
        spool.acknowledge()

    return us_per(rotation, count) - us_per(lambda: spool.append(line), count)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where to spool (default: a temporary directory)")
    args = parser.parse_args(argv)
    rows = [usage_row() for _ in range(args.rows)]
    line = usage_line(rows[0])
    results: dict[str, list[float]] = {"queue only": [], "spool + queue": [], "encode": [], "rotation": []}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(dir=args.dir) as directory:
            results["queue only"].append(us_per_submit("", rows))
            results["spool + queue"].append(us_per_submit(directory, rows))
            results["encode"].append(us_per(lambda: usage_line(rows[0]), args.rows))
            results["rotation"].append(us_per_rotation(Path(directory) / "rotation"))
    print(f"{args.rows} rows x {args.rounds} rounds, one row = {len(line)} bytes; median µs:")
    print(f"  submit_usage, queue only (no spool):        {statistics.median(results['queue only']):.2f}")
    print(f"  submit_usage, spool + queue:                {statistics.median(results['spool + queue']):.2f}")
    print(f"    of which encoding the line (orjson):      {statistics.median(results['encode']):.2f}")
    print(f"  per flush (writer thread), seal + empty:    {statistics.median(results['rotation']):.2f}")


if __name__ == "__main__":
    main()

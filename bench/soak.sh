#!/usr/bin/env bash
# bench/soak.sh [DURATION] [load.py options] — the hub at half capacity (a steady number of
# paced streams in flight) for DURATION (default 30m) with 1% injected upstream faults: a 500
# on the primary model (failover before the first byte) and a cut after 10 chunks on the
# fallback (a stream that ends with an error event). Prints one sample per 30 s (streams, ok,
# first byte p99, hub CPU, RSS, open fds), then the RSS drift and fd range. See bench/README.md.
#   bench/soak.sh              # 30 minutes
#   bench/soak.sh 3m           # a short proof
#   bench/soak.sh 30m --concurrency 100 --fault-rate 0.05
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DURATION="${1:-30m}"
[ $# -gt 0 ] && shift
[ -x "$ROOT/.venv/bin/python" ] || { echo "no $ROOT/.venv: run bin/test or bin/serve once" >&2; exit 2; }
exec "$ROOT/.venv/bin/python" "$ROOT/bench/load.py" --soak "$DURATION" "$@"

#!/usr/bin/env bash
# bench/load.sh [load.py options] — bursts of 100, 500, 1000, 2000 concurrent paced streams
# through one uvicorn worker of the hub (PostgreSQL + Redis), the simulator as its upstream.
# Prints a summary table; appends it to bench/results/load.tsv. See bench/README.md.
#   bench/load.sh                                       # the matrix (about 6 minutes)
#   bench/load.sh --workers 2                           # what a second worker adds
#   bench/load.sh --max-inflight 250 --bursts 500       # twice the limit: quick 503s, recovery
#   bench/load.sh --profile                             # where the CPU per chunk goes (py-spy)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ -x "$ROOT/.venv/bin/python" ] || { echo "no $ROOT/.venv: run bin/test or bin/serve once" >&2; exit 2; }
exec "$ROOT/.venv/bin/python" "$ROOT/bench/load.py" "$@"

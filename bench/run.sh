#!/usr/bin/env bash
# The hub beside its stack floor and LiteLLM, on the shared harness's fake upstream, in one
# run (run_matrix.sh): gateway pinned to core 0, upstream and wrk to core 1.
# Production shape: PostgreSQL + Redis, one uvicorn worker.
#   bench/run.sh                                  # OpenAI-compatible endpoint, 2 rounds, beside
#                                                 # stack-floor, stack-floor-drf and LiteLLM
#   ENDPOINT=native TARGETS=custom bench/run.sh   # the native /api/v1/pam/chat
#   HUB_ENV=MODELHUB_COOLDOWN_SECONDS=0 ...       # breaker off: every request fails over
# Knobs: ENDPOINT, DB_URL, REDIS, ROUNDS, TARGETS, HUB_ENV, plus run_matrix.sh's.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HARNESS="${HARNESS:-$ROOT/../shared/bench}"
PY="$ROOT/.venv/bin/python"
DB_URL="${DB_URL:-postgres://postgres@127.0.0.1:5432/modelhub_bench}"
REDIS="${REDIS:-redis://127.0.0.1:6379/3}"
OUT="${OUT:-$ROOT/bench/results}"
mkdir -p "$OUT"

[ -x "$HARNESS/.venv/bin/python" ] || "$HARNESS/setup.sh"
[ -x "$PY" ] || { python3 -m venv "$ROOT/.venv"; "$ROOT/.venv/bin/pip" install -q -r "$ROOT/requirements.txt"; }
psql -h 127.0.0.1 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='modelhub_bench'" | grep -q 1 \
  || createdb -h 127.0.0.1 -U postgres modelhub_bench

# The hub's settings go to the hub alone: LiteLLM would take DATABASE_URL as its own.
HUB="DATABASE_URL=$DB_URL REDIS_URL=$REDIS BENCH_UPSTREAM_KEY=bench-upstream-key"
(cd "$ROOT" && env $HUB "$PY" manage.py migrate -v0)
KEY="$(cd "$ROOT" && env $HUB "$PY" bench/seed.py "http://127.0.0.1:${UPSTREAM_PORT:-8001}/v1" | tail -1)"

export CUSTOM_CMD="env -C $ROOT $HUB ${HUB_ENV:-} $ROOT/.venv/bin/uvicorn pam.asgi:application \
  --host 127.0.0.1 --port 8000 --no-access-log --log-level warning --lifespan off"
if [ "${ENDPOINT:-openai}" = native ]; then
  export CUSTOM_URL=http://127.0.0.1:8000/api/v1/pam/chat STREAM_CHECK="event: done"
else
  export CUSTOM_URL=http://127.0.0.1:8000/v1/chat/completions
fi
export CUSTOM_HEALTH=http://127.0.0.1:8000/api/v1/health
export CUSTOM_AUTH="Bearer $KEY"
export TARGETS="${TARGETS:-custom stack-floor stack-floor-drf litellm-proxy}" OUT
cd "$HARNESS" && ./run_matrix.sh

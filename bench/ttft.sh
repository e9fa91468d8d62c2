#!/usr/bin/env bash
# Time to first token added by each gateway: the shared harness's fake upstream on core 1,
# one gateway at a time on core 0, N serial streamed requests each (bench/ttft.py).
#   bench/ttft.sh            # N=300
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HARNESS="${HARNESS:-$ROOT/../shared/bench}"
HPY="$HARNESS/.venv/bin/python"; PY="$ROOT/.venv/bin/python"; N="${N:-300}"
# The hub's settings go to the hub alone: LiteLLM would take DATABASE_URL as its own.
HUB="DATABASE_URL=${DB_URL:-postgres://postgres@127.0.0.1:5432/modelhub_bench} REDIS_URL=${REDIS:-redis://127.0.0.1:6379/3} BENCH_UPSTREAM_KEY=bench-upstream-key"
export LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_DONT_SHOW_FEEDBACK_BOX=true
LKEY=sk-bench-0123456789abcdef0123456789abcdef
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
wait_up() { for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }
measure() {  # label url key extra...
  local label="$1" url="$2" key="$3"; shift 3
  printf '%-22s ' "$label"; "$PY" "$ROOT/bench/ttft.py" "$url" --key "$key" -n "$N" "$@" | tail -1
}
gateway() { taskset -c 0 "$@" >/dev/null 2>&1 & GW=$!; PIDS+=("$GW"); }

taskset -c 1 "$HPY" "$HARNESS/upstream.py" --port 8001 >/dev/null 2>&1 & PIDS+=($!)
wait_up http://127.0.0.1:8001/health
measure "upstream (direct)" http://127.0.0.1:8001/v1/chat/completions x --model good-model

(cd "$ROOT" && env $HUB "$PY" manage.py migrate -v0)
KEY="$(cd "$ROOT" && env $HUB "$PY" bench/seed.py http://127.0.0.1:8001/v1 | tail -1)"
gateway env -C "$ROOT" $HUB "$ROOT/.venv/bin/uvicorn" pam.asgi:application --port 8000 --no-access-log \
  --log-level warning --lifespan off
wait_up http://127.0.0.1:8000/api/v1/health
measure "hub /v1" http://127.0.0.1:8000/v1/chat/completions "$KEY" --model good-model
measure "hub native" http://127.0.0.1:8000/api/v1/pam/chat "$KEY" --native --model good-model
kill "$GW"

gateway "$HPY" "$HARNESS/stack_floor_app.py" --port 4003 --upstream http://127.0.0.1:8001
wait_up http://127.0.0.1:4003/health
measure "stack-floor" http://127.0.0.1:4003/v1/chat/completions x --model good-model
kill "$GW"

gateway env LITELLM_MASTER_KEY=$LKEY "$HARNESS/.venv/bin/litellm" --config "$HARNESS/litellm_config.yaml" \
  --host 127.0.0.1 --port 4000 --num_workers 1
wait_up http://127.0.0.1:4000/health/liveliness
measure "litellm-proxy" http://127.0.0.1:4000/v1/chat/completions "$LKEY" --model good-model

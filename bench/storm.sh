#!/usr/bin/env bash
# bench/storm.sh [HUB_TREE] — a failure storm: the hub serves a route whose primary model
# fails often, at a paced offered load (default 500 req/s), with a short cooldown, so the
# primary's circuit breaker changes state many times a second. Reports requests/s, p50/p99,
# non-2xx, gateway CPU per request, and what the transitions cost: shared configuration
# version bumps (Redis), snapshot rebuilds (database reads of the configuration tables),
# ModelHealth row writes and reads. Appends one row per run to OUT/storm.tsv.
#
#   bench/storm.sh                                  # the tree this script lives in
#   HARNESS=/tmp/harness bench/storm.sh /tmp/before # another checkout of the hub
#   MODE=down bench/storm.sh                        # primary always fails (scenario d shape)
#
# Same shape as bench/run.sh: one uvicorn worker pinned to core 0, PostgreSQL + Redis; fake
# upstream(s) and wrk on core 1. Its own database and Redis db (not run.sh's) by default.
#
# Modes (route the load is sent to):
#   flaky  route "storm" = [flaky-model, good-model]. flaky-model sits on its own fake upstream
#          (FLAKY_PORT) that fails FAIL_RATE of calls at random; good-model never fails. Both
#          transitions happen: a failure starts a cooldown, a successful trial ends it.
#   down   route "bad-model" = [bad-model, good-model] (bench/seed.py); bad-model always fails,
#          so each cooldown ends in a failed trial and a new cooldown (failure transitions only).
#
# Knobs (env, defaults): MODE=flaky RATE=500 (offered req/s; 0 = closed loop) CONC=50
#   DURATION=30s WARMUP=3s COOLDOWN=0.02 (MODELHUB_COOLDOWN_SECONDS) FAIL_RATE=0.5
#   HARNESS=<script repo>/../shared/bench DB_NAME=modelhub_storm REDIS=redis://127.0.0.1:6379/4
#   VERSION_KEY=modelhub:config-version HEALTH_KEY=modelhub:health-version
#   HUB_PORT=8100 UPSTREAM_PORT=8101 FLAKY_PORT=8102
#   GW_CPU=0 UP_CPU=1 HUB_ENV="" (extra VAR=value for the hub) OUT=<hub tree>/bench/results
#
# Counting: the version deltas (config; health where the tree has a health version) are read
# from Redis before and after the load; database figures are deltas of pg_stat_user_tables,
# read after the hub has stopped (a backend flushes its statistics when it exits).
# "snapshot rebuilds" = scans of modelhub_aimodel: on the chat path only the full snapshot build
# reads that table, one query per build (checked: N version bumps -> N scans); a ModelHealth
# insert's foreign-key check adds one and the warm-up's build can land in the window: ±2.
# "ModelHealth table reads" counts every scan of it (snapshot/health loads and the writer's own
# get_or_create), so it is a cost figure, not a count of loads.
set -euo pipefail

SELF_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="$(cd "${1:-${ROOT:-$SELF_ROOT}}" && pwd)"
HARNESS="$(cd "${HARNESS:-$SELF_ROOT/../shared/bench}" && pwd)"
PY="$ROOT/.venv/bin/python"
HPY="$HARNESS/.venv/bin/python"
MODE="${MODE:-flaky}"
RATE="${RATE:-500}"
CONC="${CONC:-50}"
DURATION="${DURATION:-30s}"
WARMUP="${WARMUP:-3s}"
COOLDOWN="${COOLDOWN:-0.02}"
FAIL_RATE="${FAIL_RATE:-0.5}"
DB_NAME="${DB_NAME:-modelhub_storm}"
DB_URL="postgres://postgres@127.0.0.1:5432/$DB_NAME"
REDIS="${REDIS:-redis://127.0.0.1:6379/4}"
VERSION_KEY="${VERSION_KEY:-modelhub:config-version}"
HEALTH_KEY="${HEALTH_KEY:-modelhub:health-version}"  # newer trees: health changes bump this one instead
HUB_PORT="${HUB_PORT:-8100}"
UPSTREAM_PORT="${UPSTREAM_PORT:-8101}"
FLAKY_PORT="${FLAKY_PORT:-8102}"
GW_CPU="${GW_CPU:-0}"
UP_CPU="${UP_CPU:-1}"
OUT="${OUT:-$ROOT/bench/results}"
TS="$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
LOG="$OUT/storm-$MODE-$TS.log"
TSV="$OUT/storm.tsv"

case "$MODE" in
  flaky) ROUTE=storm ;;
  down)  ROUTE=bad-model ;;
  *) echo "MODE must be flaky or down" >&2; exit 2 ;;
esac
command -v wrk >/dev/null || { echo "wrk not found (run $HARNESS/setup.sh)" >&2; exit 2; }
[ -x "$HPY" ] || "$HARNESS/setup.sh"
[ -x "$PY" ] || { python3 -m venv "$ROOT/.venv"; "$ROOT/.venv/bin/pip" install -q -r "$ROOT/requirements.txt"; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$HUB_PORT" "$UPSTREAM_PORT" "$FLAKY_PORT"; do port_free "$p" || { echo "port $p busy" >&2; exit 1; }; done

PIDS=(); TMP="$(mktemp -d)"
stop_pid() {  # graceful, then forced; only the given PID
  local p="$1" i
  kill "$p" 2>/dev/null || return 0
  for i in $(seq 1 40); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.25; done
  kill -9 "$p" 2>/dev/null || true
}
cleanup() { local p; for p in "${PIDS[@]}"; do stop_pid "$p"; done; rm -rf "$TMP"; }
trap cleanup EXIT
wait_http() {  # url timeout_s
  local i; for i in $(seq 1 $(($2 * 10))); do curl -sf -m 2 -o /dev/null "$1" && return 0; sleep 0.1; done; return 1
}
psql_q() { psql -h 127.0.0.1 -U postgres -d "$DB_NAME" -Atc "$1"; }
rget() { local v; v=$(redis-cli -u "$REDIS" GET "$1" | tr -d '"\r'); echo "${v:-0}"; }
pgstats() {  # aimodel scans (= snapshot rebuilds), modelhealth ins+upd+del, modelhealth scans, usagerecord inserts
  psql_q "SELECT
    coalesce(sum(seq_scan + coalesce(idx_scan,0)) FILTER (WHERE relname='modelhub_aimodel'),0),
    coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del) FILTER (WHERE relname='modelhub_modelhealth'),0),
    coalesce(sum(seq_scan + coalesce(idx_scan,0)) FILTER (WHERE relname='modelhub_modelhealth'),0),
    coalesce(sum(n_tup_ins) FILTER (WHERE relname='modelhub_usagerecord'),0)
    FROM pg_stat_user_tables" | tr '|' ' '
}
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# --- database, configuration
psql -h 127.0.0.1 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='$DB_NAME'" | grep -q 1 \
  || createdb -h 127.0.0.1 -U postgres "$DB_NAME"
HUB="DATABASE_URL=$DB_URL REDIS_URL=$REDIS BENCH_UPSTREAM_KEY=bench-upstream-key MODELHUB_VERSION_KEY=$VERSION_KEY"
(cd "$ROOT" && env $HUB "$PY" manage.py migrate -v0)
KEY="$(cd "$ROOT" && env $HUB "$PY" bench/seed.py "http://127.0.0.1:$UPSTREAM_PORT/v1" | tail -1)"
# flaky-model on its own provider (its own fake upstream); route storm = [flaky-model, good-model]
(cd "$ROOT" && env $HUB "$PY" - "http://127.0.0.1:$FLAKY_PORT/v1" <<'EOF'
import os, sys
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pam.settings")
import django
django.setup()
from modelhub.models import AIModel, ModelHealth, Provider, Route, RouteEntry
provider, _ = Provider.objects.update_or_create(
    name="storm-flaky", defaults=dict(kind="openai_compatible", base_url=sys.argv[1], api_key_env="BENCH_UPSTREAM_KEY"))
flaky = AIModel.objects.update_or_create(provider=provider, model_id="flaky-model", defaults=dict(
    input_price_per_mtok="0.15", output_price_per_mtok="0.60", max_output_tokens=4096))[0]
good = AIModel.objects.get(provider__name="bench", model_id="good-model")
route, _ = Route.objects.get_or_create(name="storm")
route.entries.all().delete()
for position, model in enumerate((flaky, good)):
    RouteEntry.objects.create(route=route, model=model, position=position)
ModelHealth.objects.all().delete()  # every run starts healthy
EOF
)

# --- fake upstreams on UP_CPU: the bench one (bad-model always 500s) and the flaky one
taskset -c "$UP_CPU" "$HPY" "$HARNESS/upstream.py" --port "$UPSTREAM_PORT" > "$OUT/storm-upstream-$TS.log" 2>&1 &
PIDS+=($!)
taskset -c "$UP_CPU" "$HPY" "$HARNESS/upstream.py" --port "$FLAKY_PORT" --fail-models "" --fail-rate "$FAIL_RATE" \
  > "$OUT/storm-upstream-flaky-$TS.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$UPSTREAM_PORT/health" 30 && wait_http "http://127.0.0.1:$FLAKY_PORT/health" 30 \
  || { echo "upstream did not start" >&2; exit 1; }

# --- the hub: one uvicorn worker on GW_CPU
t0=$(date +%s.%N)
taskset -c "$GW_CPU" env -C "$ROOT" $HUB MODELHUB_COOLDOWN_SECONDS="$COOLDOWN" ${HUB_ENV:-} \
  "$ROOT/.venv/bin/uvicorn" pam.asgi:application --host 127.0.0.1 --port "$HUB_PORT" \
  --no-access-log --log-level warning --lifespan off > "$LOG" 2>&1 &
GW=$!; PIDS+=($GW)
wait_http "http://127.0.0.1:$HUB_PORT/api/v1/health" 180 || { echo "hub did not start; log tail:" >&2; tail -20 "$LOG" >&2; exit 1; }
ready=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
rss0=$(ps -o rss= -p "$GW" | tr -d ' ')
URL="http://127.0.0.1:$HUB_PORT/v1/chat/completions"

# --- warm-up on the healthy route, then one check request on the storm route
export BENCH_AUTH="Bearer $KEY" BENCH_PROMPT="Say hi" BENCH_STREAM=false
BENCH_MODEL=good-model BENCH_LABEL=warmup taskset -c "$UP_CPU" wrk -t1 -c10 -d"$WARMUP" -s "$HARNESS/chat.lua" "$URL" >/dev/null 2>&1 || true
code=$(curl -s -m 10 -o "$TMP/check" -w '%{http_code}' -X POST "$URL" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' --data-binary "{\"model\":\"$ROUTE\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hi\"}],\"max_tokens\":16}" || true)
[ "$code" = 200 ] || { echo "check request on route $ROUTE: HTTP $code $(head -c 200 "$TMP/check")" >&2; exit 1; }

# --- paced load: chat.lua plus a delay() that hands out send slots RATE per second
cat > "$TMP/pace.lua" <<'EOF'
dofile(os.getenv("STORM_CHAT_LUA"))
local rate = tonumber(os.getenv("STORM_RATE") or "0")
if rate > 0 then
  local ffi = require("ffi")
  ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } storm_ts; int clock_gettime(int, storm_ts *); ]]
  local ts = ffi.new("storm_ts")
  local function now_ms() ffi.C.clock_gettime(1, ts); return tonumber(ts.tv_sec) * 1e3 + tonumber(ts.tv_nsec) / 1e6 end
  local interval, slot = 1000 / rate, nil
  function delay()  -- next free slot; no catch-up burst when the gateway fell behind
    local t = now_ms()
    slot = (slot == nil or slot + interval < t) and t or slot + interval
    return slot - t
  end
end
EOF
sleep 1
read -r re0 mh0 hr0 ur0 <<<"$(pgstats)"
v0=$(rget "$VERSION_KEY"); h0=$(rget "$HEALTH_KEY"); c0=$(cpu_ticks "$GW")
curl -s -m 5 -X POST "http://127.0.0.1:$UPSTREAM_PORT/stats/reset" >/dev/null
curl -s -m 5 -X POST "http://127.0.0.1:$FLAKY_PORT/stats/reset" >/dev/null
line="$(STORM_CHAT_LUA="$HARNESS/chat.lua" STORM_RATE="$RATE" BENCH_MODEL="$ROUTE" BENCH_LABEL="storm-$MODE" \
  taskset -c "$UP_CPU" wrk -t1 -c"$CONC" -d"$DURATION" --timeout 10s -s "$TMP/pace.lua" "$URL" 2>&1 | grep '^RESULT' || true)"
c1=$(cpu_ticks "$GW")
sleep 1  # in-flight requests and the ledger/health writer drain
v1=$(rget "$VERSION_KEY"); h1=$(rget "$HEALTH_KEY")
rss1=$(ps -o rss= -p "$GW" | tr -d ' ')
ups="$(for p in "$UPSTREAM_PORT" "$FLAKY_PORT"; do curl -s -m 5 "http://127.0.0.1:$p/stats"; echo; done \
  | python3 -c 'import sys, json
t = {}
for l in sys.stdin:
    if l.strip():
        for m, s in json.loads(l).items():
            a = t.setdefault(m, [0, 0]); a[0] += s["requests"]; a[1] += s["failed"]
print(" ".join(f"{m}={a[0]}({a[1]}failed)" for m, a in sorted(t.items())))')"
stop_pid "$GW"; sleep 1.5
read -r re1 mh1 hr1 ur1 <<<"$(pgstats)"
health="$(psql_q "SELECT string_agg(m.model_id || ':' || h.state || ' fail=' || coalesce(to_jsonb(h)->>'failure_count','?')
  || ' ok=' || coalesce(to_jsonb(h)->>'success_count','?'), ', ') FROM modelhub_modelhealth h JOIN modelhub_aimodel m ON m.id = h.model_id")"

kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
reqs=$(kv requests); secs=$(kv secs)
[ -n "$reqs" ] && [ "$reqs" -gt 0 ] || { echo "wrk gave no result: $line" >&2; exit 1; }
cpr=$(awk -v a="$c0" -v b="$c1" -v r="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.3f", (b-a)*1000/hz/r}')
bumps=$((v1 - v0)); hbumps=$((h1 - h0)); rebuilds=$((re1 - re0)); hw=$((mh1 - mh0)); hr=$((hr1 - hr0)); ledger=$((ur1 - ur0))
per_s() { awk -v n="$1" -v s="$secs" 'BEGIN{printf "%.1f", n/s}'; }
warns=$(grep -c ' WARNING ' "$LOG" || true); errs=$(grep -c -E ' ERROR |Traceback' "$LOG" || true)

echo "# storm $TS  tree=$ROOT ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+dirty'))"
echo "# mode=$MODE route=$ROUTE offered=${RATE}/s c=$CONC duration=$DURATION cooldown=${COOLDOWN}s fail_rate=$FAIL_RATE (flaky)"
echo "hub ready in ${ready}s, rss ready ${rss0} KiB, after ${rss1} KiB"
echo "requests/s=$(kv rps)  p50=$(kv p50_ms)ms  p90=$(kv p90_ms)ms  p99=$(kv p99_ms)ms  max=$(kv max_ms)ms  non2xx=$(kv non2xx)  sockerr=$(kv sockerr)  requests=$reqs in ${secs}s"
echo "gateway CPU ms/req=$cpr   upstream calls: $ups"
echo "config version bumps=$bumps ($(per_s "$bumps")/s)   health version bumps=$hbumps ($(per_s "$hbumps")/s)   snapshot rebuilds=$rebuilds ($(per_s "$rebuilds")/s)"
echo "ModelHealth row writes=$hw ($(per_s "$hw")/s)   ModelHealth table reads=$hr ($(per_s "$hr")/s)   ledger rows=$ledger"
echo "ModelHealth now: ${health:-none}"
echo "hub log: $warns WARNING, $errs ERROR/Traceback lines ($LOG)"
[ -s "$TSV" ] || printf 'ts\ttree\tcommit\tmode\trate\tconc\tcooldown\tfail_rate\trps\tp50_ms\tp99_ms\tnon2xx\tsockerr\trequests\tcpu_ms_req\tversion_bumps\tsnapshot_rebuilds\thealth_writes\tledger_rows\trss_ready_kib\trss_after_kib\tready_s\thealth_version_bumps\thealth_reads\tp90_ms\n' > "$TSV"
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$TS" "$ROOT" \
  "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)" "$MODE" "$RATE" "$CONC" "$COOLDOWN" "$FAIL_RATE" \
  "$(kv rps)" "$(kv p50_ms)" "$(kv p99_ms)" "$(kv non2xx)" "$(kv sockerr)" "$reqs" "$cpr" "$bumps" "$rebuilds" \
  "$hw" "$ledger" "$rss0" "$rss1" "$ready" "$hbumps" "$hr" "$(kv p90_ms)" >> "$TSV"
echo "row appended to $TSV"

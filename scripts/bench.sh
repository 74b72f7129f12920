#!/usr/bin/env bash
# The issue-11 benchmark in one command: rpa-ml side by side with the Python peer (FastAPI + Celery,
# equal work) on a SQLite backend, then rpa-ml alone on a PostgreSQL backend for the 1,000-project
# job, then ONE table (peer, rpa-ml, ratio; the PostgreSQL-backend rows below).
#
#   scripts/bench.sh [N_ONE=3000] [N_THOUSAND=100]
#   RPA_ML_BIN=/path/to/rpa-ml scripts/bench.sh       # measure that binary (default: build release)
#
# Knobs: RPA_ML_BIN, BENCH_BIN (client of the PostgreSQL-backend run; default RPA_ML_BIN when its
# `bench` is this version's, else this checkout built), PEER_DIR (default ../shared/peer beside the repo root), SCRATCH (kept between runs:
# demo backend, the peer's model; default ~/.cache/rpa-ml-bench), CLIENT (rust: `rpa-ml bench` drives
# both APIs; py: the peer's aiohttp client), PG_BACKEND=0 (skip the PostgreSQL-backend run),
# TIMEOUT (seconds for the side by side, 5400), and the runner's own (CONC, WARMUP, IDLE_K, RPA_WORKERS,
# RPA_CONC, ...: see $PEER_DIR/README.txt).
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust), redis-server and psql on PATH, python3.
# Talks only to 127.0.0.1. Every process it starts is stopped by its pid (also on error or Ctrl-C).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N_ONE=${1:-3000}
N_K=${2:-100}
PEER_DIR=$(cd "$ROOT" && readlink -f "${PEER_DIR:-../shared/peer}") || PEER_DIR=
[ -n "$PEER_DIR" ] && [ -f "$PEER_DIR/run_side_by_side.sh" ] \
  || { echo "no peer runner: set PEER_DIR to the folder holding run_side_by_side.sh"; exit 2; }
SCRATCH=${SCRATCH:-${XDG_CACHE_HOME:-$HOME/.cache}/rpa-ml-bench}
mkdir -p "$SCRATCH/results" "$SCRATCH/logs"
SCRATCH=$(readlink -f "$SCRATCH")
RES=$SCRATCH/results
export CLIENT=${CLIENT:-rust}
VENV=${PEER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/rpa-ml-peer/venv}

build() {
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
  (cd "$ROOT" && cargo build --release --locked --bin rpa-ml) >&2 || return 1
  echo "$CARGO_TARGET_DIR/release/rpa-ml"
}
if [ -n "${RPA_ML_BIN:-}" ]; then
  BIN=$(readlink -f "$RPA_ML_BIN")
else
  BIN=$(build) || exit 1
fi
[ -x "$BIN" ] || { echo "no rpa-ml binary at $BIN"; exit 2; }
# The PostgreSQL-backend run's client needs `rpa-ml bench --pids/--json-out`: an older binary under
# test is measured with this checkout's client (or BENCH_BIN). The side by side uses RPA_ML_BIN's own.
BENCH_BIN=${BENCH_BIN:-$BIN}
if ! "$BENCH_BIN" bench --help 2>/dev/null | grep -q -- --json-out; then
  echo "== $BENCH_BIN bench has no --json-out: building this checkout's as the PostgreSQL-backend run's client"
  BENCH_BIN=$(build) || exit 1
fi
echo "== rpa-ml: $BIN ($("$BIN" --version)); client of the PG-backend run: $BENCH_BIN; peer: $PEER_DIR; scratch: $SCRATCH"
rm -f "$RES"/pg_*.json "$RES"/pg_*.txt "$RES/table.md"

# ---- 1. side by side with the peer (SQLite backend), the peer's own runner ---------------------
# It makes the peer's venv when missing and stops everything it started, also when timed out.
# Its readiness probe of rpa-ml's api (port 8093) asks GET /ready, which answers 503 until every
# target has a production model, and the runner trains completion_time only: a curl first on its
# PATH turns exactly that URL into /ready?models=false (the dependencies; the warm-up loads the model).
SHIM=$(mktemp -d /tmp/rpa-ml-bench-shim.XXXXXX)
REAL_CURL=$(command -v curl) || { echo "curl not found"; exit 2; }
{
  echo '#!/bin/bash'
  echo 'a=()'
  echo 'for x in "$@"; do'
  echo '  [ "$x" = http://127.0.0.1:8093/ready ] && x="http://127.0.0.1:8093/ready?models=false"'
  echo '  a+=("$x")'
  echo 'done'
  echo "exec $REAL_CURL \"\${a[@]}\""
} > "$SHIM/curl"
chmod +x "$SHIM/curl"
PATH="$SHIM:$PATH" timeout --kill-after=60 "${TIMEOUT:-5400}" \
  bash "$PEER_DIR/run_side_by_side.sh" "$BIN" "$SCRATCH" "$N_ONE" "$N_K"
SIDE_RC=$?
rm -rf "$SHIM"
[ "$SIDE_RC" -eq 0 ] || echo "== the side-by-side runner ended with $SIDE_RC; the table shows what it measured"
PY=$VENV/bin/python
[ -x "$PY" ] || PY=python3

# ---- 2. rpa-ml alone on a PostgreSQL backend, 1,000-project jobs -------------------------------
STARTED=()
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$s" ] && [ "${s:0:1}" != Z ]; }
stop() {  # SIGTERM each pid we started, wait up to 20 s, then SIGKILL
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null; done
  for p in "$@"; do
    for _ in $(seq 1 200); do alive "$p" || break; sleep 0.1; done
    alive "$p" && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  local keep=() q
  for q in "${STARTED[@]}"; do [[ " $* " == *" $q "* ]] || keep+=("$q"); done
  STARTED=("${keep[@]}")
}
cleanup() { [ ${#STARTED[@]} -gt 0 ] && stop "${STARTED[@]}"; }
trap cleanup EXIT
trap 'echo interrupted; exit 130' INT TERM
LASTPID=
start() { local logf=$1; shift; "$@" > "$logf" 2>&1 & LASTPID=$!; STARTED+=("$LASTPID"); }
wait_http() { for _ in $(seq 1 $(($2 * 10))); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "not answering: $1"; return 1; }

pg_run() {
  local redis_port=${PG_REDIS_PORT:-6393} port=${PG_API_PORT:-8094} bk=rpa_ml_bench_backend st=rpa_ml_bench_store
  local pg=(-h 127.0.0.1 -U postgres) logs=$SCRATCH/logs work=$SCRATCH/pg
  local pg_pid redis_pid api setup_w job status i t ws=() roots memroots pids
  if (exec 3<>/dev/tcp/127.0.0.1/$redis_port) 2>/dev/null; then
    echo "something already listens on port $redis_port (set PG_REDIS_PORT)"; return 1
  fi
  pg_pid=$(head -1 "$(psql "${pg[@]}" -d postgres -Atc 'show data_directory')/postmaster.pid" 2>/dev/null)
  [ -n "$pg_pid" ] || { echo "PostgreSQL postmaster pid not found"; return 1; }
  rm -rf "$work"; mkdir -p "$work"
  for db in $bk $st; do
    psql -q "${pg[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" && createdb "${pg[@]}" $db || return 1
  done
  echo "== $(date +%T) PostgreSQL backend: demo data (${PROJECTS:-5000} projects, seed ${SEED:-42})"
  "$BIN" demo-data --projects "${PROJECTS:-5000}" --seed "${SEED:-42}" \
    --database-url "postgres://postgres@127.0.0.1:5432/$bk" > "$logs/pg_demo.log" 2>&1 || { cat "$logs/pg_demo.log"; return 1; }
  start "$logs/pg_redis.log" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work"
  redis_pid=$LASTPID
  for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping > /dev/null 2>&1 && break; sleep 0.1; done
  local key; key=$(openssl rand -hex 24)
  export ML_API_KEY=$key REDIS_URL=redis://127.0.0.1:$redis_port ML_STORE_URL=postgres://postgres@127.0.0.1:5432/$st
  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$bk ML_API_PORT=$port ML_API_HOST=127.0.0.1
  export MODEL_STORAGE_PATH=$work/models FEATURE_STORE_PATH=$work/features LOG_LEVEL=warn
  "$BIN" migrate > "$logs/pg_migrate.log" 2>&1 || { cat "$logs/pg_migrate.log"; return 1; }
  local url=http://127.0.0.1:$port H=(-H "Authorization: Bearer $key" -H "Content-Type: application/json")

  # Three production models: the idle-RSS figure is for a worker holding all of them.
  echo "== $(date +%T) PostgreSQL backend: retrain the three targets, make them production"
  start "$logs/pg_setup_api.log" "$BIN" api; api=$LASTPID
  start "$logs/pg_setup_worker.log" "$BIN" worker --queues train; setup_w=$LASTPID
  wait_http "$url/ready?models=false" 60 || return 1
  job=$(curl -s -X POST "$url/api/v1/models/retrain" "${H[@]}" -d '{}' | "$PY" -c 'import sys, json; print(json.load(sys.stdin)["job_id"])') || return 1
  for _ in $(seq 1 60); do  # at most 30 minutes
    status=$(curl -s "$url/api/v1/jobs/$job?wait=30" "${H[@]}" | "$PY" -c 'import sys, json; print(json.load(sys.stdin)["status"])')
    case $status in queued|running) ;; *) break ;; esac
  done
  [ "$status" = succeeded ] || { echo "retrain ended $status"; return 1; }
  curl -s "$url/api/v1/models" "${H[@]}" > "$work/models.json"
  "$PY" - "$work/models.json" <<'EOF' | while read -r t v; do
import json, sys
for t, m in json.load(open(sys.argv[1]))["targets"].items():
    if not m.get("production_version") and m.get("versions"):
        print(t, max(v["version"] for v in m["versions"]))
EOF
    curl -s -o /dev/null -X POST "$url/api/v1/models/$t/promote" "${H[@]}" \
      -d "{\"version\": $v, \"reason\": \"benchmark on demo data\"}"
  done
  stop "$setup_w" "$api"

  start "$logs/pg_api.log" "$BIN" api; api=$LASTPID
  roots="api=$api,redis=$redis_pid,pg=$pg_pid"; memroots="api=$api"; pids="api=$api"
  for i in $(seq 1 "${RPA_WORKERS:-2}"); do
    if [ -n "${RPA_CONC:-}" ]; then start "$logs/pg_worker$i.log" "$BIN" worker --queues predict --concurrency "$RPA_CONC"
    else start "$logs/pg_worker$i.log" "$BIN" worker --queues predict; fi
    ws+=("$LASTPID"); roots="$roots,worker$i=$LASTPID"; memroots="$memroots,worker$i=$LASTPID"; pids="$pids,worker$i=$LASTPID"
  done
  wait_http "$url/ready" 60 || return 1
  local b=(timeout 900 "$BENCH_BIN" bench --url "$url" --api-key "$key" --database-url "$DATABASE_URL")
  # Warm-up: one-project jobs of each target, so every worker has loaded the three models.
  for t in completion_time budget_variance risk; do
    "${b[@]}" --jobs 0 --latency-samples "$((${WARMUP:-10} * ${RPA_WORKERS:-2}))" --target "$t" \
      > "$logs/pg_warmup_$t.txt" 2>&1 || { echo "warm-up of $t failed:"; cat "$logs/pg_warmup_$t.txt"; return 1; }
  done
  "${b[@]}" --jobs 0 --latency-samples 0 --pids "$pids" --json-out "$RES/pg_idle_mem.json" > "$RES/pg_idle_mem.txt" 2>&1
  "${b[@]}" --jobs 0 --latency-samples "${IDLE_K:-5}" --projects-per-job 1000 \
    --json-out "$RES/pg_thousand.idle.json" > "$RES/pg_thousand.idle.txt" 2>&1 || { cat "$RES/pg_thousand.idle.txt"; return 1; }
  echo "== $(date +%T) rpa-ml on the PostgreSQL backend: $N_K jobs x 1000 projects"
  "$PY" "$PEER_DIR/cpuacct.py" --out "$RES/pg_thousand.cpu.json" --roots "$roots" -- \
    "${b[@]}" --jobs "$N_K" --projects-per-job 1000 --concurrency "${CONC:-32}" --latency-samples 0 \
    --pids "$pids" --json-out "$RES/pg_thousand.bench.json" > "$RES/pg_thousand.rustbench.txt" 2> "$logs/pg_thousand.bench.err"
  local rc=$?
  "$PY" "$PEER_DIR/procs.py" mem "$memroots" > "$RES/pg_thousand.mem.json"
  sed 's/^/  /' "$RES/pg_thousand.rustbench.txt"
  psql "${pg[@]}" -d $st -Atc "select '  rpa-ml pg-backend rows: jobs ' || (select count(*) from jobs where kind = 'predict') || ', predictions ' || (select count(*) from predictions) || ', numeric ' || (select count(value) from predictions)"
  stop "${ws[@]}" "$api" "$redis_pid"
  for db in $bk $st; do psql -q "${pg[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"; done
  return $rc
}
PG_RC=0
if [ "${PG_BACKEND:-1}" != 0 ]; then
  # Not in a subshell: the EXIT trap must see what pg_run started.
  pg_run; PG_RC=$?
  cleanup
  [ "$PG_RC" -eq 0 ] || echo "== the PostgreSQL-backend run failed ($PG_RC); its rows stay empty"
fi

# ---- 3. the table -----------------------------------------------------------------------------------
"$PY" "$ROOT/scripts/bench_table.py" "$RES" | tee "$RES/table.md"
[ "$SIDE_RC" -eq 0 ] && [ "$PG_RC" -eq 0 ]

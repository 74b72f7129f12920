#!/usr/bin/env bash
# The priority measurement of issue 13 in one command: a Redis queue and a PostgreSQL ML store on
# 127.0.0.1, a demo backend, an api, a worker on the prediction lanes; LOW predict jobs queued
# (default 2,000 of 1,000 projects), then HIGH 1-project jobs submitted one after another, and
# their submit → result p50 / p99 printed (`rpa-ml bench --priority-samples`).
#
#   scripts/priority-bench.sh [BACKLOG=2000] [PROJECTS=1000] [SAMPLES=100]
#   RPA_ML_BIN=/path/to/rpa-ml scripts/priority-bench.sh   # that binary (default: a debug build)
#   RELEASE=1 scripts/priority-bench.sh                     # build and measure a release binary
#
# Knobs: CONCURRENCY (the worker's --concurrency, default 4: high and normal 4 slots each, low 2),
# MAX_SECS (sampling bound, default 300), TIMEOUT (whole run, default 1800 s).
# Needs redis-server on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (user postgres, trust), and
# psql and redis-cli on PATH. Talks only to 127.0.0.1. Everything it made is removed at the end
# (processes by pid, the database, the Redis keys under its prefix, its scratch folder).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BACKLOG=${1:-2000}
PROJECTS=${2:-1000}
SAMPLES=${3:-100}
CONCURRENCY=${CONCURRENCY:-4}
MAX_SECS=${MAX_SECS:-300}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
REDIS=${REDIS:-redis://127.0.0.1:6379}

if [ -n "${RPA_ML_BIN:-}" ]; then
  BIN=$(readlink -f "$RPA_ML_BIN")
else
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
  profile=debug; flag=()
  [ "${RELEASE:-0}" = 1 ] && { profile=release; flag=(--release); }
  (cd "$ROOT" && cargo build "${flag[@]}" --locked --bin rpa-ml) >&2 || exit 1
  BIN=$CARGO_TARGET_DIR/$profile/rpa-ml
fi
[ -x "$BIN" ] || { echo "no rpa-ml binary at $BIN"; exit 2; }

SCRATCH=$(mktemp -d /tmp/rpa-ml-priority.XXXXXX)
TAG=$(basename "$SCRATCH" | tr -dc 'a-zA-Z0-9' | tr 'A-Z' 'a-z')
DB=rpa_ml_prio_$TAG
PREFIX=rpa-ml-prio-$TAG
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
  redis-cli -u "$REDIS" --scan --pattern "$PREFIX*" | xargs -r -n 500 redis-cli -u "$REDIS" del >/dev/null
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'echo interrupted; exit 130' INT TERM

psql -q "$PG_URL/postgres" -c "CREATE DATABASE $DB" || exit 1
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
KEY=priority-bench-key-0123456789
export ML_API_HOST=127.0.0.1 ML_API_PORT=$PORT ML_API_KEY=$KEY \
  DATABASE_URL=sqlite://$SCRATCH/backend.sqlite ML_STORE_URL=$PG_URL/$DB \
  REDIS_URL=$REDIS REDIS_QUEUE_PREFIX=$PREFIX \
  MODEL_STORAGE_PATH=$SCRATCH/models FEATURE_STORE_PATH=$SCRATCH/features \
  QUEUE_POLL_INTERVAL_MS=50 LOG_LEVEL=warn \
  COMPLETION_TIME_MAE_THRESHOLD=100000 BUDGET_VARIANCE_MAE_THRESHOLD=100000 \
  RISK_SCORE_ACCURACY_THRESHOLD=0 MIN_TRAINING_SAMPLES=20
BASE=http://127.0.0.1:$PORT
# Enough projects for 1,000 distinct per job.
"$BIN" demo-data --projects $((PROJECTS + 200)) --seed 7 --as-of 2026-11-01 --out "$SCRATCH/backend.sqlite" >/dev/null || exit 1

cd "$SCRATCH" || exit 1
"$BIN" api >"$SCRATCH/api.log" 2>&1 & PIDS+=($!)
"$BIN" worker --queues train >"$SCRATCH/trainer.log" 2>&1 & TRAINER=$!; PIDS+=($TRAINER)
for _ in $(seq 300); do curl -fsS "$BASE/health" >/dev/null 2>&1 && break; sleep 0.1; done
job=$(curl -fsS -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d '{}' "$BASE/api/v1/models/retrain" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])') || exit 1
status=$(curl -fsS -H "Authorization: Bearer $KEY" "$BASE/api/v1/jobs/$job?wait=600" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
[ "$status" = succeeded ] || { echo "first retrain: $status"; tail -20 "$SCRATCH/trainer.log"; exit 1; }
kill -TERM "$TRAINER"
"$BIN" worker --queues predict --concurrency "$CONCURRENCY" >"$SCRATCH/worker.log" 2>&1 & PIDS+=($!)

echo "== $BIN ($("$BIN" --version)); worker --concurrency $CONCURRENCY; $BACKLOG low jobs × $PROJECTS projects; $SAMPLES high jobs"
timeout --kill-after=30 "${TIMEOUT:-1800}" "$BIN" bench --url "$BASE" --api-key "$KEY" \
  --database-url "sqlite://$SCRATCH/backend.sqlite" --target completion_time \
  --jobs "$BACKLOG" --projects-per-job "$PROJECTS" --concurrency 16 \
  --priority-samples "$SAMPLES" --max-secs "$MAX_SECS"
rc=$?
grep -E ' (ERROR|WARN) ' "$SCRATCH"/*.log | head -5
exit $rc

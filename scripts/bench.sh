#!/usr/bin/env bash
# Starts the system at scale on this machine (Redis + PostgreSQL, one api,
# WORKERS worker processes, release build), runs `rpa-ml bench` for the two
# issue scenarios, prints the figures, and stops everything it started.
#   bash scripts/bench.sh            # JOBS=5000 one-project jobs, then 200 × 1,000-project jobs
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/rpa-ml-target}"
cargo build --release --locked --bin rpa-ml
BIN="$CARGO_TARGET_DIR/release/rpa-ml"

WORKERS="${WORKERS:-2}"
WORK="$(mktemp -d /tmp/rpa-ml-bench.XXXXXX)"
DB="rpa_ml_bench_$$"
PORT="${PORT:-18080}"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli -h 127.0.0.1 --scan --pattern "rpa-ml-bench-$$*" | xargs -r redis-cli -h 127.0.0.1 del >/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

psql -h 127.0.0.1 -U postgres -d test -qc "CREATE DATABASE $DB"
"$BIN" demo-data --projects "${PROJECTS:-5000}" --seed 42 --out "$WORK/backend.sqlite"

export ML_API_KEY="bench-$$-key" ML_API_HOST=127.0.0.1 ML_API_PORT="$PORT"
export REDIS_URL=redis://127.0.0.1:6379 REDIS_QUEUE_PREFIX="rpa-ml-bench-$$"
export ML_STORE_URL="postgres://postgres@127.0.0.1:5432/$DB"
export DATABASE_URL="sqlite://$WORK/backend.sqlite"
export MODEL_STORAGE_PATH="$WORK/models" FEATURE_STORE_PATH="$WORK/features"
export LOG_LEVEL="${LOG_LEVEL:-warn}" BATCH_SIZE="${BATCH_SIZE:-1000}"
export MAX_PROJECTS_PER_REQUEST=10000

"$BIN" migrate >/dev/null
"$BIN" api > "$WORK/api.log" 2>&1 & pids+=($!)
for i in $(seq 1 "$WORKERS"); do
  "$BIN" worker --concurrency "${CONCURRENCY:-16}" > "$WORK/worker-$i.log" 2>&1 & pids+=($!)
done
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done

# Models first (the bench measures scoring, not fitting); promote by hand if
# the demo's models miss the default gates.
job=$(curl -s -X POST "http://127.0.0.1:$PORT/api/v1/models/retrain" -H "X-API-Key: $ML_API_KEY" | sed -E 's/.*"job_id":"([^"]+)".*/\1/')
until curl -s "http://127.0.0.1:$PORT/api/v1/jobs/$job?wait=30" -H "X-API-Key: $ML_API_KEY" | grep -qE '"status":"(succeeded|failed|dead)"'; do :; done
for t in completion_time budget_variance risk; do
  curl -s -X POST "http://127.0.0.1:$PORT/api/v1/models/$t/promote" -H "X-API-Key: $ML_API_KEY" \
    -d '{"version": 1, "reason": "benchmark"}' >/dev/null || true
done
sleep 2

echo "== $WORKERS workers; $(nproc) cores"
"$BIN" bench --url "http://127.0.0.1:$PORT" --jobs "${JOBS:-5000}" --projects-per-job 1 --concurrency "${CLIENTS:-64}"
"$BIN" bench --url "http://127.0.0.1:$PORT" --jobs "${BIG_JOBS:-200}" --projects-per-job 1000 --concurrency 8 --latency-samples 10

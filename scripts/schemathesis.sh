#!/usr/bin/env bash
# Fuzzes the running API against its own OpenAPI document with schemathesis:
# every check (server errors, status codes, response schemas, schema-valid
# data accepted, schema-invalid data rejected, auth not ignored, ...), in
# positive and negative mode, at least 1,000 cases. Exits non-zero on any
# failure and prints the number of cases.
#
# The system under test is `rpa-ml standalone` (API, worker and scheduler on
# SQLite) with a small demo backend in a temporary folder and its own key.
# schemathesis is installed once into a virtualenv outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

VENV="${RPA_ML_SCHEMATHESIS_VENV:-/var/tmp/rpa-ml-schemathesis}"
VERSION="4.32.5"
# Cases per operation in the fuzzing phase: with the coverage and stateful
# phases, 25 operations give about 3,000 cases in about a minute.
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
MIN_CASES="${SCHEMATHESIS_MIN_CASES:-1000}"

if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi
"$VENV/bin/st" --version

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/rpa-ml-target}"
bin="${RPA_ML_BIN:-$CARGO_TARGET_DIR/debug/rpa-ml}"
if [ ! -x "$bin" ]; then
  cargo build --locked --bin rpa-ml
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/rpa-ml-schemathesis.XXXXXX")"
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
key="$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
base="http://127.0.0.1:$port"

# A clean environment: nothing from a developer's .env or shell leaks in
# (the folder has no .env).
(
  cd "$work"
  exec env -i PATH="$PATH" HOME="$work" \
    ML_API_KEY="$key" LOG_LEVEL=warn \
    MIN_TRAINING_SAMPLES=20 MAX_WAIT_SECS=1 \
    "$bin" standalone --port "$port" --data-dir "$work/data" --demo-projects 150
) >"$work/standalone.log" 2>&1 &
pid=$!

for _ in $(seq 1 120); do
  curl -fsS "$base/health" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/standalone.log" >&2; echo "standalone exited" >&2; exit 1; }
  sleep 0.5
done
curl -fsS "$base/health" >/dev/null || { cat "$work/standalone.log" >&2; echo "standalone did not come up" >&2; exit 1; }

set +e
# Run from the temporary folder: nothing schemathesis writes lands in the
# clone. One worker: with two threads, Python 3.11's parser can fail inside
# the generator ("AST constructor recursion depth mismatch"), an error of the
# tool that would fail the run.
(cd "$work" && exec "$VENV/bin/st" --config-file "$root/scripts/schemathesis.toml" run "$base/api/v1/openapi.json" \
  --checks all \
  --max-examples "$MAX_EXAMPLES" \
  --header "Authorization: Bearer $key" \
  --seed "${SCHEMATHESIS_SEED:-20261201}" \
  --workers 1 \
  --request-timeout 10 \
  --suppress-health-check all \
  --generation-database none \
  --no-color) 2>&1 | tee "$work/run.log"
status=${PIPESTATUS[0]}
set -e

# The summary's "Test cases:" line: "  N generated, N passed".
cases="$(awk '/^ *[0-9]+ generated/ { n = $1 } END { print n + 0 }' "$work/run.log")"
echo "schemathesis: $cases cases"
if [ "$status" -ne 0 ]; then
  echo "schemathesis found failures (exit $status); the system's log follows" >&2
  tail -n 50 "$work/standalone.log" >&2
  exit "$status"
fi
if [ "$cases" -lt "$MIN_CASES" ]; then
  echo "schemathesis ran $cases cases, fewer than $MIN_CASES" >&2
  exit 1
fi
if grep -q "panicked" "$work/standalone.log"; then
  grep -m 5 -A 3 "panicked" "$work/standalone.log" >&2
  echo "the system panicked during the run" >&2
  exit 1
fi

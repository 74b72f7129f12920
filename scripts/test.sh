#!/usr/bin/env bash
# The test command: unit tests and the integration tests under tests/, which
# talk to a real Redis and PostgreSQL on 127.0.0.1 (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
# Headless Chromium for the ops page test (tests/ops_page.rs).
bash scripts/browser.sh || echo "chromium could not be installed; the ops page test will fail"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/rpa-ml-target}"
export DATABASE_TEST_URL="${DATABASE_TEST_URL:-postgres://postgres@127.0.0.1:5432/test}"
export REDIS_TEST_URL="${REDIS_TEST_URL:-redis://127.0.0.1:6379}"
# Integration tests spawn several processes each; two cores are enough for
# four at a time.
# Optional: a real MLflow server for the export test (installed once into a
# venv outside the clone; the test says so and skips if this fails).
bash scripts/mlflow.sh || echo "mlflow could not be installed; the MLflow export test will be skipped"
export RPA_ML_MLFLOW="${RPA_ML_MLFLOW:-/var/tmp/rpa-ml-mlflow/bin/mlflow}"

# The compose and Kubernetes files against their schemas.
bash scripts/validate-deploy.sh

log="$(mktemp)"
set +e
cargo test --locked --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-4}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# The API against its own OpenAPI document (schemathesis, all checks), on
# the binary cargo has just built; it counts as one test below.
echo "== schemathesis"
bash scripts/schemathesis.sh
fuzz=$?

# The fault suite (kill -9s, Redis and PostgreSQL outages under load) on
# the same binary; it counts as one test below.
echo "== fault suite"
bash scripts/faults.sh
faults=$?
set -e
if [ "$faults" -eq 0 ]; then
  echo "test result: ok. 1 passed; 0 failed; 0 ignored (fault suite)" >>"$log"
else
  echo "test result: FAILED. 0 passed; 1 failed; 0 ignored (fault suite)" >>"$log"
  [ "$status" -ne 0 ] || status=$faults
fi
if [ "$fuzz" -eq 0 ]; then
  echo "test result: ok. 1 passed; 0 failed; 0 ignored (schemathesis)" >>"$log"
else
  echo "test result: FAILED. 0 passed; 1 failed; 0 ignored (schemathesis)" >>"$log"
  [ "$status" -ne 0 ] || status=$fuzz
fi
# One closing line for the whole run (cargo ends on its doc-test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit "$status"

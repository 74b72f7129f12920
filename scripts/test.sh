#!/usr/bin/env bash
# The test command: unit tests and the integration tests under tests/, which
# talk to a real Redis and PostgreSQL on 127.0.0.1 (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/rpa-ml-target}"
export DATABASE_TEST_URL="${DATABASE_TEST_URL:-postgres://postgres@127.0.0.1:5432/test}"
export REDIS_TEST_URL="${REDIS_TEST_URL:-redis://127.0.0.1:6379}"
# Integration tests spawn several processes each; two cores are enough for
# four at a time.
exec cargo test --locked --workspace -- --test-threads="${TEST_THREADS:-4}" "$@"

#!/usr/bin/env bash
# Installs headless Chromium and chromedriver (Debian packages) for the ops
# page test (tests/ops_page.rs) when they are missing. A no-op otherwise.
set -euo pipefail

have() {
  command -v chromedriver >/dev/null 2>&1 &&
    { [ -x /usr/lib/chromium/chromium ] || command -v chromium >/dev/null 2>&1; }
}
have && exit 0

echo "installing chromium and chromium-driver"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# Stale package lists on a fresh machine: refresh once and try again.
$sudo apt-get install -y -q chromium chromium-driver ||
  { $sudo apt-get update -q && $sudo apt-get install -y -q chromium chromium-driver; }
have || { echo "chromium/chromedriver still missing after install" >&2; exit 1; }

#!/usr/bin/env bash
# Checks the deployment files against their schemas:
# - compose/docker-compose.yml, once per profile (default, dev, monitoring,
#   tracking, tls, all together), with `docker compose config` when the
#   compose plugin is there, else Debian's docker-compose (installed when
#   missing);
# - k8s/ rendered by `kubectl kustomize` when kubectl is on the machine (the
#   files as listed in kustomization.yaml otherwise), each object validated
#   strictly against the Kubernetes API schema by kubernetes-validate (PyPI,
#   in a virtualenv outside the clone).
# tests/deploy.rs runs what the same files run (health checks, probes,
# commands) with the real binary, and checks them against the code
# (variables read, series exported).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${RPA_ML_DEPLOY_VENV:-/var/tmp/rpa-ml-deploy-venv}"
KV_VERSION="1.37.0"

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  if ! command -v docker-compose >/dev/null 2>&1; then
    echo "installing docker-compose (for validation only)"
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q docker-compose >/dev/null ||
      { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q docker-compose >/dev/null; }
  fi
  compose=(docker-compose)
fi
if ! "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$KV_VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
fi

echo "== compose"
for profiles in "" dev monitoring tracking tls "dev monitoring tracking tls"; do
  args=()
  for p in $profiles; do args+=(--profile "$p"); done
  ML_API_KEY=validate "${compose[@]}" -p rpa-ml -f compose/docker-compose.yml "${args[@]}" config -q
  echo "compose/docker-compose.yml [${profiles:-default}]: valid"
done

echo "== kubernetes"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize k8s/ >"$tmp/rendered.yaml"
  files=("$tmp/rendered.yaml")
else
  echo "(kubectl not found: validating the files kustomization.yaml lists, unrendered)"
  files=()
  while read -r f; do files+=("k8s/$f"); done < <(awk '/^resources:/{r=1;next} /^[^ ]/{r=0} r && /^ *- /{print $2}' k8s/kustomization.yaml)
fi
files+=("k8s/secret.example.yaml")
"$VENV/bin/kubernetes-validate" --strict --quiet "${files[@]}"
echo "k8s: $(grep -c '^kind:' "${files[@]}" | awk -F: '{s+=$NF} END {print s}') objects valid"

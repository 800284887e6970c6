#!/usr/bin/env bash
# The GeN convergence benchmark (BENCHMARKS.md, "Convergence"):
#   scripts/convergence.sh [--quick] [--out DIR] [--controllers paper,adaptive] [--seeds N]
#                          [--jobs N] [--tasks A,B] [--bin-dir DIR]
# Builds the release binaries (unless --bin-dir names others), then runs scripts/convergence.py
# with the project venv (numpy only; matplotlib is used for convergence.png when importable).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ -x .venv/bin/python ] || ./scripts/setup.sh
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)}"
case " $* " in
  *" --bin-dir "*) ;;
  *) cargo build --release --bins --quiet ;;
esac
exec .venv/bin/python scripts/convergence.py "$@"

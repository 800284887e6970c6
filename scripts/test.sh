#!/usr/bin/env bash
# The test command (CI runs it through .ci/run): sets up what the tests need, then runs them.
# Idempotent; on a fresh machine it installs the Python venv with onnxruntime==1.31.1 and
# onnx==1.19.0 (the backend test corpus) first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/setup.sh
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)}"
cargo fmt --all -- --check
# One build: the tract backend (cargo feature `tract`, ~8 min cold on 2 cores) is compiled into the
# test build itself, so its tests (tests/tract_*.rs) run without a second build.
cargo test --workspace --features tract --no-fail-fast "$@"
# The convergence benchmark's quick subset (digits MLP and diabetes regression, SGD and AdamW, a
# few hundred steps each): every run completes, none diverges, every loss falls. It uses the
# debug binaries the test build above just made, so it adds no build (3-20 s).
./scripts/convergence.sh --quick --bin-dir target/debug

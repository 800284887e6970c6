#!/usr/bin/env bash
# Fuzzes ONNX import + shape inference + constant folding with arbitrary bytes for SECONDS
# (default 600; further arguments go to libFuzzer, e.g. `-fork=1 -ignore_crashes=1` to go on
# after a crash), from the seed corpus of scripts/fuzz-seeds.sh. Needs a nightly toolchain
# and cargo-fuzz (`cargo install cargo-fuzz`). Crashes land in fuzz/artifacts/import/; make
# each one a regression case in passes/tests/malformed.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
shift || true
[ -d fuzz/seeds ] || scripts/fuzz-seeds.sh
mkdir -p fuzz/corpus/import
cargo +nightly fuzz run import fuzz/corpus/import fuzz/seeds -- \
    -max_total_time="$secs" -rss_limit_mb=4096 -malloc_limit_mb=4096 -timeout=20 \
    -print_final_stats=1 "$@"

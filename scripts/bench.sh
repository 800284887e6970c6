#!/usr/bin/env bash
# The GeN overhead benchmark: compiles the small ViT fixture (models/vit) with GeN (lazy_freq 4,
# probes on the training batch) and without, then runs both for a few hundred steps alternately
# with `gen-train bench` and prints the wall-time and peak-memory ratios side by side.
#   ./scripts/bench.sh [STEPS] [BATCH]        (defaults: 300 steps, batch 32)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/setup.sh
steps=${1:-300}
batch=${2:-32}
cargo build --release --bin gen-compile --bin gen-train
work=target/bench-vit
mkdir -p "$work"
./target/release/gen-compile models/vit/model.onnx -o "$work/gen.onnx" \
  --loss cross-entropy --lazy-freq 4 --probe-batch current
./target/release/gen-compile models/vit/model.onnx -o "$work/plain.onnx" \
  --loss cross-entropy --gen off
.venv/bin/python - "$work/data.npz" <<'PY'
import sys
import numpy as np
# learnable labels: the argmax of a fixed random linear teacher over the pixels
r = np.random.RandomState(0)
x = r.normal(size=(512, 3, 32, 32)).astype(np.float32)
teacher = r.normal(size=(3 * 32 * 32, 10)).astype(np.float32)
np.savez(sys.argv[1], input=x, labels=(x.reshape(512, -1) @ teacher).argmax(1).astype(np.int64))
PY
./target/release/gen-train bench "$work/gen.onnx" "$work/plain.onnx" --data "$work/data.npz" \
  --batch-size "$batch" --steps "$steps" --rounds 6

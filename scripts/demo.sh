#!/usr/bin/env bash
# The main job, end to end on a fresh machine: set up, build, compile the digits MLP into a
# GeN training graph, train it with gen-train and print where the run went.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/setup.sh
cargo build --release --bins
out=${1:-runs/demo}
mkdir -p "$out"
./target/release/gen-compile models/digits/mlp.onnx -o "$out/train.onnx" \
  --loss cross-entropy --optimizer adamw --lr 1e-3
rm -rf "$out/run"
./target/release/gen-train "$out/train.onnx" --data models/digits/train.npz \
  --eval-data models/digits/val.npz --epochs 5 --batch-size 64 --out "$out/run"
echo "demo: metrics, plots, checkpoints and the trained model are in $out/run"

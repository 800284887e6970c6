#!/usr/bin/env bash
# GPU check for gen-train, on a machine with an NVIDIA GPU (driver for CUDA 13):
#   1. installs onnxruntime-gpu[cuda,cudnn]==1.31.1 (CUDA 13 + cuDNN 9 wheels) into target/gpu-venv
#      (set WHEELHOUSE=DIR to install offline from downloaded wheels);
#   2. builds gen-train (release; the CUDA provider bindings are always compiled in, the library
#      loaded at run time decides what runs) unless GEN_TRAIN names a prebuilt binary;
#   3. trains a train graph (default: the contract_toy fixture) for STEPS steps on CUDA and on the
#      CPU, and prints the execution provider that really ran (from ONNX Runtime's profile), the
#      steps/s of both and the host<->device bytes per step;
#   4. runs the GeN / no-GeN bench on CUDA (time and GPU-memory ratios).
# Fails if the CUDA provider did not run the train graph. Usage:
#   scripts/device_check.sh [TRAIN.onnx DATA.npz BATCH_SIZE [NOGEN_TRAIN.onnx]]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
steps=${STEPS:-300}
model=${1:-models/contract_toy/train.onnx}
data=${2:-models/contract_toy/train.npz}
batch=${3:-64}
nogen=${4:-models/contract_toy/train.nogen.onnx}

nvidia-smi -L || { echo "device_check: no NVIDIA GPU visible (nvidia-smi failed)" >&2; exit 1; }

venv="$root/target/gpu-venv"
stamp="$venv/.gen-gpu-v1"
if [[ ! -f "$stamp" ]]; then
  echo "device_check: installing onnxruntime-gpu[cuda,cudnn]==1.31.1 into $venv" >&2
  python3 -m venv "$venv"
  pip_args=(-q --disable-pip-version-check)
  if [[ -n "${WHEELHOUSE:-}" ]]; then pip_args+=(--no-index --find-links "$WHEELHOUSE"); fi
  "$venv/bin/python" -m pip install "${pip_args[@]}" 'onnxruntime-gpu[cuda,cudnn]==1.31.1' 'numpy<3'
  touch "$stamp"
fi
lib=$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
echo "device_check: ONNX Runtime library $lib" >&2

if [[ -n "${GEN_TRAIN:-}" ]]; then
  bin=$GEN_TRAIN
else
  cargo build --release --bin gen-train
  bin="$root/target/release/gen-train"
fi

out=$(mktemp -d)
for device in cuda cpu; do
  echo "=== $device: $steps steps of $model (batch $batch)"
  "$bin" "$model" --data "$data" --batch-size "$batch" --steps "$steps" \
    --device "$device" --ort-lib "$lib" --out "$out/$device" --quiet | tee "$out/$device.txt"
done

echo "=== summary"
for device in cuda cpu; do
  rate=$(grep -o '([0-9.]* steps/s)' "$out/$device.txt" | tr -d '()')
  provider=$(grep 'execution provider that ran the train graph' "$out/$device.txt" | cut -d: -f2-)
  echo "$device: $rate;$provider"
done
grep 'host<->device per step' "$out/cuda.txt" || true

echo "=== bench on cuda: $model vs $nogen"
"$bin" bench "$model" "$nogen" --data "$data" --batch-size "$batch" --steps "$steps" \
  --device cuda --ort-lib "$lib"

if ! grep -q 'train graph:.*CUDAExecutionProvider' "$out/cuda.txt"; then
  echo "device_check: FAIL: the CUDA execution provider did not run the train graph" >&2
  exit 1
fi
echo "device_check: OK (run directories in $out)"

#!/usr/bin/env bash
# Builds the fuzz seed corpus fuzz/seeds/ (not committed): every model.onnx of the ONNX
# backend node tests in the project's Python environment (.venv, see scripts/setup.sh),
# plus the small ONNX fixtures committed under tests/ and models/.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
[ -x "$py" ] || py=python3
onnx_dir=$("$py" -c 'import onnx, os; print(os.path.dirname(onnx.__file__))')
nodes="$onnx_dir/backend/test/data/node"
[ -d "$nodes" ] || { echo "no ONNX backend node tests under $nodes (install onnx: scripts/setup.sh)" >&2; exit 1; }
mkdir -p fuzz/seeds
n=0
for m in "$nodes"/*/model.onnx; do
    cp "$m" "fuzz/seeds/$(basename "$(dirname "$m")").onnx"
    n=$((n + 1))
done
while IFS= read -r -d '' m; do
    cp "$m" "fuzz/seeds/fixture_$(echo "$m" | tr '/' '_')"
    n=$((n + 1))
done < <(find tests models -name '*.onnx' -size -256k -print0 2>/dev/null)
echo "fuzz/seeds: $n seed models"

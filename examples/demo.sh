#!/usr/bin/env bash
# The main job, for now: check the digits MLP, write fresh weights, and run a
# forward pass on five real digits (scikit-learn's data set) with the
# reference interpreter. Run from the repository root after building.
set -euo pipefail
LATHE=${LATHE:-build/lathe}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

$LATHE check examples/mlp.nn --bind batch=5
$LATHE init examples/mlp.nn -o "$out/mlp.safetensors" --seed 1
/usr/bin/python3 - "$out" <<'PY'
import sys, numpy as np
from sklearn.datasets import load_digits
d = load_digits()
np.save(sys.argv[1] + "/x.npy", (d.data[:5] / 16.0).astype(np.float32))
print("labels of the five digits:", d.target[:5].tolist())
PY
$LATHE run examples/mlp.nn --weights "$out/mlp.safetensors" --in x="$out/x.npy" --backend interp
for m in examples/*.nn; do $LATHE check "$m" > /dev/null && echo "check $m: ok"; done

#!/usr/bin/env bash
# The main job: train the digits MLP (examples/mlp.nn) on scikit-learn's 8x8
# handwritten digits with a 60/20/20 split, then report its test accuracy.
# Run from the repository root after building.
set -euo pipefail
LATHE=${LATHE:-build/lathe}
DIGITS=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
out=${OUT:-$(mktemp -d)}

$LATHE check examples/mlp.nn --bind batch=64 | tail -5
time $LATHE train examples/mlp.nn --data "$DIGITS" --out "$out" --plot "$out/curves.svg"
echo "checkpoints, log and learning curves in $out"

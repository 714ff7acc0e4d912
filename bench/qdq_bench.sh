#!/bin/bash
# before/after of the qdq passes in one run: the same lathe_bench binary, --passes without qdq_place/qdq_fold = before
# (build-bench/lathe_bench: built by bench/run, or cmake -S bench -B build-bench -DCMAKE_BUILD_TYPE=Release)
cd "$(dirname "$0")/.."
B=build-bench/lathe_bench; D=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
PLAIN=constfold,simplify,cse,dce,foldbn,attnsave,fuse
export LATHE_THREADS=1
uptime
for round in 1 2 3; do
  for cfg in "examples/mlp.nn 1 1x64 3000" "examples/mlp.nn 256 256x64 300" "examples/cnn.nn 1 1x1x8x8 3000" "examples/cnn.nn 128 128x1x8x8 200" "examples/cnn.nn 256 256x1x8x8 200"; do
    set -- $cfg
    common="$1 --bind batch=$2 --in x=f32:$3 --reps $4 --warmup 20 --max-seconds 1.5"
    for v in f32 before after; do
      case $v in
        f32) extra="" ;;
        before) extra="--quant int8 --calib-data $D --passes $PLAIN" ;;
        after) extra="--quant int8 --calib-data $D" ;;
      esac
      r=$($B $common $extra 2>/dev/null | tail -1 | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.5f %.5f" % (d["median_ms"], d["min_ms"]))')
      echo "$round $(basename $1 .nn) b$2 $v $r"
    done
  done
done
uptime

#!/bin/bash
# Issue 16: "a quantized layer is never slower than its f32 version". Per feature set (LATHE_CPU_FEATURES) and
# batch, the f32 model against each quantized mode as compiled (where its kernel would be slower the compiler keeps
# the layer f32: passes/quantize_cost.c) and with the rule off (LATHE_QUANT_KEEP_F32=0: the quantized kernel forced,
# the numbers behind the rule's table). One process per row, rows of one table in one run, LATHE_THREADS=1; ms:
# median per forward (fastest step in brackets). Not a test: a measurement (docs/quantize.md has the numbers).
#   bench/quant_keep_bench.sh [FEATURES...]     (default: none; e.g. none -avx512vnni,-avxvnni host)
# B= the lathe_bench binary (default build-bench/lathe_bench: bench/run builds it).
cd "$(dirname "$0")/.."
B=${B:-build-bench/lathe_bench}
D=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
export LATHE_THREADS=1
[ -x "$B" ] || { echo "no $B: run bench/run --list first (it builds build-bench), or set B=" >&2; exit 1; }
feats=("$@")
[ ${#feats[@]} -eq 0 ] && feats=(none)

# one row: label, env, lathe_bench arguments -> "label median (min)"
row() {
  local label=$1 env=$2
  shift 2
  local r
  r=$(env $env "$B" "$@" --warmup 10 --max-seconds 1 2>/dev/null | tail -1 |
    /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.4f (%.4f)" % (d["median_ms"], d["min_ms"]))' 2>/dev/null)
  echo "${r:-failed}"
}

uptime
for f in "${feats[@]}"; do
  fe="LATHE_CPU_FEATURES=$f"
  [ "$f" = host ] && fe="LATHE_BENCH_HOST=1"
  echo "== LATHE_CPU_FEATURES=$f"
  printf "%-22s %-20s %-20s %-20s\n" row f32 "as compiled" "kernel forced"
  for cfg in "bench/dense1024.nn 1 1x1024 2000" "bench/dense1024.nn 256 256x1024 100" \
             "examples/mlp.nn 1 1x64 3000" "examples/mlp.nn 256 256x64 200"; do
    set -- $cfg
    common=("$1" --bind batch=$2 --in "x=f32:$3" --reps $4)
    name="$(basename "$1" .nn)_b$2"
    f32=$(row f32 "$fe" "${common[@]}")
    modes="w8 w4 int8-dynamic bf16 f16"
    [ "$(basename "$1")" = mlp.nn ] && modes="w8 w4 int8-dynamic int8"
    for m in $modes; do
      extra=(--quant $m)
      [ $m = int8 ] && extra+=(--calib-data "$D")
      as=$(row as "$fe" "${common[@]}" "${extra[@]}")
      forced=$(row forced "$fe LATHE_QUANT_KEEP_F32=0" "${common[@]}" "${extra[@]}")
      printf "%-22s %-20s %-20s %-20s\n" "$name $m" "$f32" "$as" "$forced"
    done
  done
done
uptime

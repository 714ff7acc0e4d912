#!/usr/bin/env bash
# cuda_mpi.sh LATHE LATHE_CX -- data-parallel training on the CUDA backend (docs/distributed.md, "On GPUs"):
# 1. the product: without NCCL (LATHE_NCCL_LIB pointing nowhere), `mpirun -np 2 lathe train --backend cuda`
#    ends every rank with one line naming NCCL and where it looked, and no rank hangs (on a machine without
#    a GPU driver the same line names the driver first);
# 2. without a GPU: lathe_cx (lathe with the CPU executor in the driver's place, tests/cuexec/cli/) trains the
#    digits MLP on 2 and 4 ranks (and --zero1 on 2) and a small char-GPT on 2 with --backend cuda, the
#    collectives going through the executor's answer to the NCCL calls (the job's MPI path), and every weight
#    and optimizer state is within 1e-5 of one process's; the CUDA graph of the step holds the collectives
#    (LATHE_CUDA_GRAPH=0 gives the same bits); and `lathe eval --backend cuda` of the char-GPT prints the
#    interpreter's metrics.
# Skips LOUDLY without mpirun, a build with MPI or the executor's host compiler.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/cx_skip.sh"

# ---- 1. no NCCL: every rank ends with one line, none hangs ----
no_nccl

# ---- 2. the executor: 2 and 4 ranks against one process ----
# the first 500 digits: 4 steps of 64 (every rank count sees the same global batches)
zcat "$DIGITS" | head -500 >"$tmp/digits.csv"
train() { # OUT RANKS ARGS...
  local out=$1 n=$2; shift 2
  if [ "$n" = 1 ]; then "$CX" train "$@" --backend cuda --out "$tmp/$out" --quiet >"$tmp/$out.txt" 2>&1
  else mpi "$n" train "$@" --backend cuda --out "$tmp/$out" --quiet >"$tmp/$out.txt" 2>&1; fi ||
    bad "$out: $(tail -5 "$tmp/$out.txt")"
}
REAL=$LATHE
LATHE=$CX # mpi() runs $LATHE
t0=$(date +%s)
train m1 1 examples/mlp.nn --data "$tmp/digits.csv" --epochs 1
# Under the sanitizers (the CI's ASan tree) every step is several times slower: 4 ranks and the char-GPT are
# left to the plain build, as in tests/mpi.sh
NPS="2 4"
if ldd "$CX" | grep -q libasan; then
  NPS=2
  echo "SKIPPED under ASan: np 4 and the char-GPT (the plain build runs them)"
fi
for n in $NPS; do
  train m$n $n examples/mlp.nn --data "$tmp/digits.csv" --epochs 1
  same "$tmp/m1/last.safetensors" "$tmp/m$n/last.safetensors" "digits MLP on the executor, np $n vs one process"
done
# --zero1: each gradient reduce-scattered (ncclReduceScatter's call), the updated slices all-gathered
train mz 2 examples/mlp.nn --data "$tmp/digits.csv" --epochs 1 --zero1
same "$tmp/m1/last.safetensors" "$tmp/mz/last.safetensors" "digits MLP on the executor, --zero1 np 2 vs one process"
# graphs off: every launch one by one, the same bits as the replayed graph that holds the collectives
LATHE_CUDA_GRAPH=0 train mg 2 examples/mlp.nn --data "$tmp/digits.csv" --epochs 1
cmp -s "$tmp/m2/last.safetensors" "$tmp/mg/last.safetensors" && ok ||
  bad "np 2: LATHE_CUDA_GRAPH=0 trained other bits than the graphs"
if [ "$NPS" != 2 ]; then
  # the char-GPT (examples/gpt.nn) at a size the executor steps through quickly (its attention runs a fiber per
  # GPU thread): T = 16, d = 32, 2 heads, 2 layers; 600 bytes of text: 4 steps of 8 windows
  sed 's/^const VOCAB = 96, T = 64, D = 128, HEADS = 4, LAYERS = 4$/const VOCAB = 96, T = 16, D = 32, HEADS = 2, LAYERS = 2/' \
    examples/gpt.nn >"$tmp/gpt.nn"
  grep -q "T = 16, D = 32" "$tmp/gpt.nn" && ok || bad "examples/gpt.nn's constants changed: update cuda_mpi.sh"
  head -c 600 docs/training.md >"$tmp/text.txt"
  train g1 1 "$tmp/gpt.nn" --data "$tmp/text.txt" --epochs 1 --batch 8
  train g2 2 "$tmp/gpt.nn" --data "$tmp/text.txt" --epochs 1 --batch 8
  same "$tmp/g1/last.safetensors" "$tmp/g2/last.safetensors" "char-GPT on the executor, np 2 vs one process"
  # evaluation on the GPU reads the logits from the output the plan wrote (evaluation adds "__pred", the same node
  # as the model's "logits"): the interpreter's metrics, not a uniform prediction's ln 96 = 4.5643
  "$CX" eval "$tmp/gpt.nn" --weights "$tmp/g1/last.safetensors" --data "$tmp/text.txt" --split val --backend cuda \
    >"$tmp/ev_cuda.txt" 2>&1
  "$REAL" eval "$tmp/gpt.nn" --weights "$tmp/g1/last.safetensors" --data "$tmp/text.txt" --split val --backend interp \
    >"$tmp/ev_ref.txt" 2>&1
  diff "$tmp/ev_cuda.txt" "$tmp/ev_ref.txt" >/dev/null && ok ||
    bad "lathe eval --backend cuda: $(head -1 "$tmp/ev_cuda.txt"), the interpreter: $(head -1 "$tmp/ev_ref.txt")"
fi
echo "executor runs: $(($(date +%s) - t0)) s"
finish

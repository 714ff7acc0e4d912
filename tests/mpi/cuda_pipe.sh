#!/usr/bin/env bash
# cuda_pipe.sh LATHE LATHE_CX -- pipeline-parallel stages on the CUDA backend (--pipeline K --backend cuda,
# docs/distributed.md "On GPUs"): a stage's ops send and recv are ncclSend/ncclRecv on the program's stream.
# 1. the product: without NCCL (LATHE_NCCL_LIB pointing nowhere), `mpirun -np 2 lathe train --pipeline 2
#    --backend cuda` ends with one line naming NCCL and where it looked (on a machine without a GPU driver the
#    same line names the driver first), and no rank hangs;
# 2. without a GPU: lathe_cx (lathe with the CPU executor in the driver's place, tests/cuexec/cli/) trains a
#    small char-GPT with --pipeline 2 --backend cuda, the transfers going through the executor's answer to
#    ncclSend/ncclRecv (the job's MPI path, with a header no host-side MPI transfer carries, so a pairing NCCL
#    would never make fails), and every weight and optimizer state is within 1e-5 of one process on the
#    executor and of the CPU pipeline (--backend llvm); the CUDA graphs that hold the transfers give the bits of
#    launching one by one (LATHE_CUDA_GRAPH=0); the digits MLP on 3 stages (a middle stage receives and sends in
#    one program) matches one process; `lathe run --pipeline K --backend cuda` gives one process's logits and
#    probabilities; `lathe eval --pipeline 2 --backend cuda` prints the interpreter's metrics.
# Skips LOUDLY without mpirun, a build with MPI or the executor's host compiler.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/cx_skip.sh"
PY=/usr/bin/python3

# ---- 1. no NCCL: one line naming it, no rank hangs ----
no_nccl --pipeline 2

# ---- 2. the executor ----
run() { # OUT RANKS BIN ARGS...: lathe train on RANKS ranks (1: one process), its output in $tmp/OUT.txt
  local out=$1 n=$2 bin=$3; shift 3
  if [ "$n" = 1 ]; then "$bin" "$@" >"$tmp/$out.txt" 2>&1
  else LATHE=$bin mpi "$n" "$@" >"$tmp/$out.txt" 2>&1; fi || bad "$out: $(tail -5 "$tmp/$out.txt")"
}
t0=$(date +%s)
# Under the sanitizers (the CI's ASan tree) every step is several times slower: the char-GPT is left to the plain
# build, as in cuda_mpi.sh
asan=
if ldd "$CX" | grep -q libasan; then
  asan=1
  echo "SKIPPED under ASan: the char-GPT (the plain build runs it)"
fi
"$PY" -c "
import numpy as np
np.save('$tmp/tok.npy', (np.arange(4 * 16).reshape(4, 16) * 7 % 96).astype(np.int32))
np.save('$tmp/x.npy', (np.arange(8 * 64).reshape(8, 64) % 17).astype(np.float32))"
if [ -z "$asan" ]; then
  # the char-GPT (examples/gpt.nn) at a size the executor steps through quickly (its attention runs a fiber per GPU
  # thread): T = 16, d = 32, 2 heads, 2 layers; 600 bytes of text: 4 steps of 8 windows, 2 micro-batches of 4
  sed 's/^const VOCAB = 96, T = 64, D = 128, HEADS = 4, LAYERS = 4$/const VOCAB = 96, T = 16, D = 32, HEADS = 2, LAYERS = 2/' \
    examples/gpt.nn >"$tmp/gpt.nn"
  grep -q "T = 16, D = 32" "$tmp/gpt.nn" && ok || bad "examples/gpt.nn's constants changed: update cuda_pipe.sh"
  head -c 600 docs/training.md >"$tmp/text.txt"
  G="$tmp/gpt.nn --data $tmp/text.txt --epochs 1 --batch 8 --quiet"
  run g1 1 "$CX" train $G --backend cuda --out "$tmp/g1"
  run gp 2 "$CX" train $G --backend cuda --pipeline 2 --out "$tmp/gp"
  run gc 2 "$LATHE" train $G --pipeline 2 --out "$tmp/gc"
  same "$tmp/g1/last.safetensors" "$tmp/gp/last.safetensors" "char-GPT, --pipeline 2 on the executor vs one process on it"
  same "$tmp/gc/last.safetensors" "$tmp/gp/last.safetensors" "char-GPT, --pipeline 2 on the executor vs the CPU pipeline"
  # graphs off: every launch (and every transfer) one by one, the bits of the replayed graphs
  LATHE_CUDA_GRAPH=0 run gn 2 "$CX" train $G --backend cuda --pipeline 2 --out "$tmp/gn"
  cmp -s "$tmp/gp/last.safetensors" "$tmp/gn/last.safetensors" && ok ||
    bad "--pipeline 2: LATHE_CUDA_GRAPH=0 trained other bits than the graphs"

  # inference: 2 stages of the char-GPT, one process's logits
  W="--weights $tmp/g1/last.safetensors --in tokens=$tmp/tok.npy"
  run o1 1 "$CX" run "$tmp/gpt.nn" $W --out logits="$tmp/o1.npy" --backend cuda
  run o2 2 "$CX" run "$tmp/gpt.nn" $W --out logits="$tmp/o2.npy" --backend cuda --pipeline 2
  npy_close "$tmp/o1.npy" "$tmp/o2.npy" "char-GPT inference, --pipeline 2 --backend cuda vs one process"
  # evaluation: the last stage prints the interpreter's metrics
  run e2 2 "$CX" eval "$tmp/gpt.nn" --weights "$tmp/g1/last.safetensors" --data "$tmp/text.txt" --split val --backend cuda \
    --pipeline 2
  "$LATHE" eval "$tmp/gpt.nn" --weights "$tmp/g1/last.safetensors" --data "$tmp/text.txt" --split val --backend interp \
    >"$tmp/e1.txt" 2>&1
  diff "$tmp/e1.txt" "$tmp/e2.txt" >/dev/null && ok ||
    bad "lathe eval --pipeline 2 --backend cuda: $(head -1 "$tmp/e2.txt"), the interpreter: $(head -1 "$tmp/e1.txt")"
fi

# the digits MLP on 3 stages: the middle one receives and sends in the same program (forward: from 0, to 2;
# gradient: from 2, to 0); the first 500 digits, 4 steps of 64 in one micro-batch, so every product has one
# process's shapes and the weights are one process's bits (measured: 0 difference); with 2 micro-batches one
# fc2.weight value whose gradient is near zero moves by 1.4e-5, the rounding Adam magnifies (docs/distributed.md)
zcat "$DIGITS" | head -500 >"$tmp/digits.csv"
M="examples/mlp.nn --data $tmp/digits.csv --epochs 1 --quiet"
run m1 1 "$CX" train $M --backend cuda --out "$tmp/m1"
run m3 3 "$CX" train $M --backend cuda --pipeline 3 --micro-batches 1 --out "$tmp/m3"
same "$tmp/m1/last.safetensors" "$tmp/m3/last.safetensors" "digits MLP, --pipeline 3 on the executor vs one process on it"
run p1 1 "$CX" run examples/mlp.nn --weights "$tmp/m1/last.safetensors" --in x="$tmp/x.npy" --out probs="$tmp/p1.npy" \
  --backend cuda
run p3 3 "$CX" run examples/mlp.nn --weights "$tmp/m1/last.safetensors" --in x="$tmp/x.npy" --out probs="$tmp/p3.npy" \
  --backend cuda --pipeline 3
npy_close "$tmp/p1.npy" "$tmp/p3.npy" "digits MLP inference, --pipeline 3 --backend cuda vs one process"
echo "executor runs: $(($(date +%s) - t0)) s"
finish

#!/usr/bin/env bash
# tests/gpu/run.sh -- the CUDA backend on a real GPU, in one prepared run
# (issue 14, item 7): build, the CUDA tests through the driver and cuBLASLt
# against the reference interpreter, the digits MLP trained end to end with
# --backend cuda, then the GPU benchmark against PyTorch on the same GPU in
# the same call, GPT-2-small inference tokens/s with the key/value cache on
# the device included. Meant for the device tool (under 8 minutes, 16 cores):
#
#   tests/gpu/run.sh            # from the repository root
#
# Every step prints a PASS/FAIL (or SKIP, with why) line; the exit status is
# the number of failed steps. Nothing here runs without a GPU: the suite's
# CPU-executor tests (test_cuda_run, test_cuda_exec, cuda_nvrtc.sh) are the
# no-GPU path.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
T0=$SECONDS
fails=0
step() { echo; echo "== $* ($((SECONDS - T0)) s)"; }
verdict() { if [ "$1" -eq 0 ]; then echo "PASS: $2"; else echo "FAIL: $2"; fails=$((fails + 1)); fi; }

step "the device"
if ! nvidia-smi -L; then echo "FAIL: no GPU (nvidia-smi found none)"; exit 1; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

step "build (Release) and the benchmark driver"
J=$(nproc)
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j"$J" >build-gpu.log 2>&1
verdict $? "build (log: build-gpu.log)"
cmake -S bench -B build-gpu-bench -DCMAKE_BUILD_TYPE=Release >/dev/null &&
  cmake --build build-gpu-bench -j"$J" --target lathe_bench >>build-gpu.log 2>&1
verdict $? "build lathe_bench"
[ "$fails" -eq 0 ] || { echo "tests/gpu/run.sh: the build failed (build-gpu.log); nothing else runs"; exit "$fails"; }
L=build-gpu/lathe
B=build-gpu-bench/lathe_bench
$L --version

step "outputs, losses and weights after training steps: the GPU against the interpreter"
LATHE_TEST_REAL_GPU=1 timeout 300 build-gpu/tests/test_cuda_run
verdict $? "test_cuda_run on the GPU (every example's forward and training step in f32 and bf16, the bf16 training attention included; generate: greedy and the device's sampler, sample_token alone against the host's sampler)"

step "the no-GPU CUDA tests (NVRTC for sm_80/sm_90, the CPU executor) on this machine too"
timeout 300 ctest --test-dir build-gpu -R 'cuda|cuexec' --output-on-failure -j"$J" | tail -8
verdict "${PIPESTATUS[0]}" "ctest -R 'cuda|cuexec'"

step "the main job on the GPU: digits MLP, lathe train --backend cuda"
OUT=$(mktemp -d)
timeout 180 $L train examples/mlp.nn --backend cuda --data /usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz \
  --out "$OUT" 2>&1 | tail -4
verdict "${PIPESTATUS[0]}" "lathe train --backend cuda"

step "data-parallel on 2 GPUs: mpirun -np 2 lathe train --backend cuda (NCCL) against one process"
NGPU=$(nvidia-smi -L | grep -c '^GPU')
if [ "$NGPU" -lt 2 ]; then
  echo "SKIP (loudly): this machine has $NGPU GPU; the 2-rank NCCL training needs 2 (tests/mpi/cuda_mpi.sh runs it on the CPU executor)"
elif ! command -v mpirun >/dev/null || ! $L --version | grep -q '^distributed: mpi'; then
  echo "SKIP (loudly): no mpirun or a build without MPI: $($L --version | grep '^distributed')"
else
  DP=$(mktemp -d)
  zcat /usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz >"$DP/digits.csv"
  timeout 120 $L train examples/mlp.nn --backend cuda --data "$DP/digits.csv" --epochs 3 --out "$DP/one" --quiet &&
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 180 mpirun -np 2 --oversubscribe $L train \
      examples/mlp.nn --backend cuda --data "$DP/digits.csv" --epochs 3 --out "$DP/two" 2>&1 | tail -3 &&
    /usr/bin/python3 tests/mpi/cmp_weights.py "$DP/one/last.safetensors" "$DP/two/last.safetensors" 1e-4
  verdict $? "2 ranks on 2 GPUs (NCCL all-reduce in the step's CUDA graph): every weight within 1e-4 of one GPU"
fi

step "pipeline stages on 2 GPUs: mpirun -np 2 lathe train --pipeline 2 --backend cuda (ncclSend/ncclRecv) against one process"
if [ "$NGPU" -lt 2 ]; then
  echo "SKIP (loudly): this machine has $NGPU GPU; 2 pipeline stages need 2 (tests/mpi/cuda_pipe.sh runs them on the CPU executor)"
elif ! command -v mpirun >/dev/null || ! $L --version | grep -q '^distributed: mpi'; then
  echo "SKIP (loudly): no mpirun or a build without MPI: $($L --version | grep '^distributed')"
else
  # one micro-batch: every product has one process's shapes (tests/mpi/cuda_pipe.sh); the run's one GPU weights
  # from the data-parallel step above
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 180 mpirun -np 2 --oversubscribe $L train \
    examples/mlp.nn --backend cuda --data "$DP/digits.csv" --epochs 3 --pipeline 2 --micro-batches 1 \
    --out "$DP/pipe" 2>&1 | tail -3 &&
    /usr/bin/python3 tests/mpi/cmp_weights.py "$DP/one/last.safetensors" "$DP/pipe/last.safetensors" 1e-4
  verdict $? "2 pipeline stages on 2 GPUs (ncclSend/ncclRecv in the stages' CUDA graphs): every weight within 1e-4 of one GPU"
fi

step "benchmark: Lathe (--backend cuda) against PyTorch on this GPU, median ms per step"
GPT='{"vocab":96,"T":64,"d":128,"heads":4,"layers":4}'
bench_row() { # NAME MODEL KIND BATCH TRAIN(0|1) LATHE-ARGS... ; peer kwargs in $KW, peer flags in $PEERX (bf16),
             # Lathe's repetitions in $REPS/$WARM (default 50/10)
  local name=$1 model=$2 kind=$3 batch=$4 train=$5; shift 5
  local targ="" parg=""
  [ "$train" = 1 ] && targ=--train && parg=train
  local lj pj
  lj=$(timeout 150 $B "$model" --backend cuda $targ --bind batch="$batch" "$@" --reps "${REPS:-50}" --warmup "${WARM:-10}" 2>&1 | grep '^{' | tail -1)
  pj=$(timeout 120 /usr/bin/python3 bench/gpu_peer.py "$name" "$kind" "$batch" ${parg:+"$parg"} ${PEERX:+"$PEERX"} ${KW:+--json-kw "$KW"} 2>&1 | grep '^{')
  /usr/bin/python3 - "$name" "$lj" "$pj" <<'PY'
import json, sys
name, lj, pj = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    l = json.loads(lj)
    lm = "%.4f" % l["median_ms"]
except Exception:
    l, lm = None, "error: " + (lj or "no output")[:120]
peers = [json.loads(s) for s in pj.splitlines() if s.startswith("{")]
row = "%-22s lathe %s" % (name, lm)
for p in peers:
    if "median_ms" in p:
        row += " | torch %s %.4f" % (p["mode"], p["median_ms"])
        if l:
            row += " (lathe/torch %.3f)" % (l["median_ms"] / p["median_ms"])
    else:
        row += " | torch %s error: %s" % (p.get("mode"), p.get("error", "")[:80])
print(row)
PY
}
KW='' bench_row mlp_b256 examples/mlp.nn mlp 256 0 --in x=f32:256x64
KW='' bench_row mlp_train_b64 examples/mlp.nn mlp 64 1 --in x=f32:64x64 --in y=i32:64:10
KW='' bench_row cnn_train_b128 examples/cnn.nn cnn 128 1 --in x=f32:128x1x8x8 --in y=i32:128:10
KW=$GPT bench_row gpt_char_b16 examples/gpt.nn gpt 16 0 --in tokens=i32:16x64:96
KW=$GPT bench_row gpt_char_train_b16 examples/gpt.nn gpt 16 1 --in tokens=i32:16x64:96 --in next=i32:16x64:96
# GPT-2 small (124M) training step at batch 8, T=1024: f32, and --precision bf16 against torch.autocast(bfloat16)
G2='{"vocab":50257,"T":1024,"d":768,"heads":12,"layers":12}'
G2IN=(--in tokens=i32:8x1024:50257 --in next=i32:8x1024:50257)
KW=$G2 REPS=10 WARM=3 bench_row gpt2_small_train_b8 bench/gpt2_small_train.nn gpt 8 1 "${G2IN[@]}"
KW=$G2 REPS=10 WARM=3 PEERX=bf16 bench_row gpt2_small_train_b8_bf16 bench/gpt2_small_train.nn gpt 8 1 "${G2IN[@]}" --precision bf16
# GPT-2 small (124M) inference (bench/gpt2_small_gen.nn: T=1024, vocabulary 50257, the lm head and the greedy argmax
# on the device), tokens/s with the key/value cache on the device, f32 and bf16, against PyTorch's own KV-cache loop
# (gpu_peer.py, the same shape)
gen_row() { # NAME TOKENS LATHE-ARGS... ; peer flags in $PEERX (bf16); NOPEER=1: Lathe alone (PyTorch's loop is greedy)
  local name=$1 ntok=$2; shift 2
  local lj pj=""
  lj=$(timeout 240 $B bench/gpt2_small_gen.nn --backend cuda --bind batch=1 --generate "$ntok" "$@" 2>&1 | grep '^{' | tail -1)
  [ -z "${NOPEER:-}" ] &&
    pj=$(timeout 120 /usr/bin/python3 bench/gpu_peer.py "$name" gpt 1 generate "$ntok" ${PEERX:+"$PEERX"} --json-kw "$G2GEN" 2>&1 |
      grep '^{')
  /usr/bin/python3 - "$name" "$lj" "$pj" <<'PY'
import json, sys
name, lj, pj = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    l = json.loads(lj)
    row = "%-22s lathe %.1f tokens/s (%.3f ms/token, cached %d, token on the device %s)" % (
        name, l["tokens_per_s"], 1e3 / l["tokens_per_s"], l["cached"], l.get("device_token"))
except Exception:
    l, row = None, "%-22s lathe error: %s" % (name, (lj or "no output")[:120])
try:
    if not pj:
        raise StopIteration  # NOPEER: Lathe alone
    p = json.loads(pj.splitlines()[-1])
    row += " | torch %s %.1f tokens/s" % (p["mode"], p["tokens_per_s"])
    if l:
        row += " (lathe time/torch time %.3f)" % (p["tokens_per_s"] / l["tokens_per_s"])
except StopIteration:
    pass
except Exception:
    row += " | torch error: %s" % (pj or "no output")[:120]
print(row)
ok = l is not None and l.get("cached") == 1 and l.get("device_token") == 1
sys.exit(0 if ok else 1)
PY
  verdict $? "generate $name: lathe_generate --backend cuda with the key/value cache on the device"
}
G2GEN='{"vocab":50257,"T":1024,"d":768,"heads":12,"layers":12}'
gen_row gpt2_small_generate 200
PEERX=bf16 gen_row gpt2_small_generate_bf16 200 --precision bf16
# sampled on the device (sample_token: temperature 0.8, top-k 40, one pick per round over the 50257 logits); against
# the greedy rows above, what the draw costs a token
NOPEER=1 gen_row gpt2_small_generate_topk40 200 --temperature 0.8 --top-k 40

step "compile time: cold and warm (NVRTC disk cache) for the char-GPT forward"
LATHE_CACHE_DIR=$(mktemp -d)
export LATHE_CACHE_DIR
for k in cold warm; do
  $B examples/gpt.nn --backend cuda --bind batch=16 --compile-only 2>&1 | grep '^{' |
    /usr/bin/python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print('$k compile_ms %.1f' % d['compile_ms'])"
done

echo
echo "tests/gpu/run.sh: $fails failed step(s) in $((SECONDS - T0)) s"
exit "$fails"

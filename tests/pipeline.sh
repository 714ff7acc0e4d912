#!/usr/bin/env bash
# pipeline.sh -- pipeline-parallel training under mpirun (--pipeline K, docs/distributed.md) and hang detection:
# 1. the digits MLP cut into 2 stages (2 and 4 micro-batches) trains one process's weights and optimizer
#    state on the same global batches, within 1e-5; only rank 0 prints and writes;
# 2. the char-GPT likewise with 2 stages (about 10 steps: the suite stays short; docs/distributed.md reports
#    200 steps);
# 2b. inference (lathe run --pipeline K) gives one process's outputs within 1e-5, lathe eval --pipeline K its metrics;
# 3. --resume of a pipeline checkpoint (which holds the whole model) continues to the same weights;
# 4. what is not supported is refused with a clear message: more stages than layer boundaries, a job whose
#    ranks are not the stages, --zero1, --pipeline in one process;
# 5. a rank that stops answering (SIGSTOP), a data-parallel rank or a pipeline stage, ends the job after
#    --comm-timeout, with a message naming it (within 30 s).
# Skips LOUDLY without mpirun or in a build without MPI.
. "$(dirname "$0")/lib/common.sh"
PY=/usr/bin/python3
DIGITS=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
MPIRUN=$(command -v mpirun || true)
if [ -z "$MPIRUN" ] || ! "$LATHE" --version | grep -q "^distributed: mpi"; then
  echo "SKIPPED: pipeline.sh needs mpirun and a Lathe built with MPI (apt-get install libopenmpi-dev openmpi-bin," \
       "then reconfigure): $("$LATHE" --version | grep '^distributed')"
  "$LATHE" train examples/mlp.nn --data "$DIGITS" --epochs 1 --pipeline 2 --quiet >"$tmp/p1.txt" 2>&1
  grep -q "needs exactly 2 ranks" "$tmp/p1.txt" && ok || bad "--pipeline in one process: $(cat "$tmp/p1.txt")"
  finish
fi
. "$(dirname "$0")/mpi/env.sh"
asan=
if ldd "$LATHE" | grep -q libasan; then
  asan=1
  echo "SKIPPED under ASan: the char-GPT and 4 micro-batches (the plain build runs them)"
fi

# ---- 1. digits MLP, 2 epochs (32 steps of 64) ----
"$LATHE" train examples/mlp.nn --data "$DIGITS" --epochs 2 --out "$tmp/one" --quiet >"$tmp/one.txt" 2>&1 ||
  bad "one process: $(cat "$tmp/one.txt")"
MBS="2 4"
[ -n "$asan" ] && MBS=2
for mb in $MBS; do
  mpi 2 train examples/mlp.nn --data "$DIGITS" --epochs 2 --pipeline 2 --micro-batches $mb --out "$tmp/p$mb" \
    >"$tmp/p$mb.txt" 2>&1 || bad "pipeline 2, $mb micro-batches: $(tail -5 "$tmp/p$mb.txt")"
  same "$tmp/one/last.safetensors" "$tmp/p$mb/last.safetensors" "digits MLP, --pipeline 2, $mb micro-batches"
  [ "$(grep -c '^test accuracy' "$tmp/p$mb.txt")" = 1 ] && ok || bad "not one test line: $(cat "$tmp/p$mb.txt")"
  grep -q "^2 ranks: steps .* waiting for communication" "$tmp/p$mb.txt" && ok ||
    bad "no communication line: $(cat "$tmp/p$mb.txt")"
done
grep -q "stage 0: .* stage 1: " "$tmp/p2.txt" && ok || bad "no stage plan line: $(head -5 "$tmp/p2.txt")"

# ---- 2. char-GPT, 1 epoch of a small text (about 10 steps of 16 windows) ----
if [ -z "$asan" ]; then
  cat README.md docs/training.md docs/language.md | head -c 12000 >"$tmp/text.txt"
  "$LATHE" train examples/gpt.nn --data "$tmp/text.txt" --epochs 1 --out "$tmp/g1" --quiet >"$tmp/g1.txt" 2>&1 ||
    bad "gpt one process: $(cat "$tmp/g1.txt")"
  mpi 2 train examples/gpt.nn --data "$tmp/text.txt" --epochs 1 --pipeline 2 --out "$tmp/g2" --quiet \
    >"$tmp/g2.txt" 2>&1 || bad "gpt pipeline 2: $(tail -5 "$tmp/g2.txt")"
  same "$tmp/g1/last.safetensors" "$tmp/g2/last.safetensors" "char-GPT, --pipeline 2"
fi

# ---- 2b. inference: lathe run --pipeline K gives one process's outputs (2 and 4 stages of the char-GPT, 3 of
# the MLP, whose weights carry the inputs' normalisation) ----
/usr/bin/python3 -c "
import numpy as np
np.save('$tmp/tok.npy', (np.arange(4 * 64).reshape(4, 64) * 7 % 96).astype(np.int32))
np.save('$tmp/x.npy', (np.arange(8 * 64).reshape(8, 64) % 17).astype(np.float32))"
if [ -z "$asan" ]; then
  "$LATHE" run examples/gpt.nn --weights "$tmp/g1/last.safetensors" --in tokens="$tmp/tok.npy" --out logits="$tmp/o1.npy" \
    >/dev/null 2>&1 || bad "gpt run, one process"
  for k in 2 4; do
    mpi $k run examples/gpt.nn --pipeline $k --weights "$tmp/g1/last.safetensors" --in tokens="$tmp/tok.npy" \
      --out logits="$tmp/o$k.npy" >"$tmp/run$k.txt" 2>&1 || bad "gpt run --pipeline $k: $(tail -5 "$tmp/run$k.txt")"
    npy_close "$tmp/o1.npy" "$tmp/o$k.npy" "char-GPT inference, --pipeline $k"
  done
fi
"$LATHE" run examples/mlp.nn --weights "$tmp/one/last.safetensors" --in x="$tmp/x.npy" --out probs="$tmp/m1.npy" \
  >/dev/null 2>&1 || bad "mlp run, one process"
mpi 3 run examples/mlp.nn --pipeline 3 --weights "$tmp/one/last.safetensors" --in x="$tmp/x.npy" --out probs="$tmp/m3.npy" \
  >"$tmp/runm.txt" 2>&1 || bad "mlp run --pipeline 3: $(tail -5 "$tmp/runm.txt")"
npy_close "$tmp/m1.npy" "$tmp/m3.npy" "digits MLP inference, --pipeline 3"
# lathe eval --pipeline K: the last stage prints one process's metrics
"$LATHE" eval examples/mlp.nn --weights "$tmp/one/last.safetensors" --data "$DIGITS" >"$tmp/e1.txt" 2>&1 ||
  bad "mlp eval, one process: $(cat "$tmp/e1.txt")"
mpi 3 eval examples/mlp.nn --pipeline 3 --weights "$tmp/one/last.safetensors" --data "$DIGITS" >"$tmp/e3.txt" 2>&1 ||
  bad "mlp eval --pipeline 3: $(tail -5 "$tmp/e3.txt")"
diff "$tmp/e1.txt" "$tmp/e3.txt" >/dev/null && ok || bad "eval --pipeline 3 differs: $(cat "$tmp/e3.txt")"
if [ -z "$asan" ]; then
  "$LATHE" eval examples/gpt.nn --weights "$tmp/g1/last.safetensors" --data "$tmp/text.txt" --split val >"$tmp/ge1.txt" 2>&1
  mpi 2 eval examples/gpt.nn --pipeline 2 --weights "$tmp/g1/last.safetensors" --data "$tmp/text.txt" --split val \
    >"$tmp/ge2.txt" 2>&1 || bad "gpt eval --pipeline 2: $(tail -5 "$tmp/ge2.txt")"
  diff "$tmp/ge1.txt" "$tmp/ge2.txt" >/dev/null && ok || bad "gpt eval --pipeline 2 differs: $(cat "$tmp/ge2.txt")"
fi

# ---- 3. --resume: 1 epoch on the pipeline, the 2nd resumed (the checkpoint holds the whole model) ----
mpi 2 train examples/mlp.nn --data "$DIGITS" --epochs 1 --pipeline 2 --out "$tmp/r" --quiet >"$tmp/r1.txt" 2>&1 ||
  bad "resume, first epoch: $(tail -5 "$tmp/r1.txt")"
mpi 2 train examples/mlp.nn --data "$DIGITS" --epochs 2 --pipeline 2 --out "$tmp/r" --resume --quiet \
  >"$tmp/r2.txt" 2>&1 || bad "pipeline resume: $(tail -5 "$tmp/r2.txt")"
same "$tmp/one/last.safetensors" "$tmp/r/last.safetensors" "--pipeline 2, resumed, vs one process"

# ---- 4. refused ----
refused() { # refused PATTERN WHAT NP ARGS...
  local pat=$1 what=$2 n=$3; shift 3
  mpi "$n" train examples/mlp.nn --data "$DIGITS" --epochs 1 --quiet "$@" >"$tmp/x.txt" 2>&1 &&
    bad "$what: not refused"
  grep -q -- "$pat" "$tmp/x.txt" && ok || bad "$what: $(tail -5 "$tmp/x.txt")"
}
refused "the model has 5 layer boundaries to cut at, so at most 6 stages" "7 stages of the MLP" 7 --pipeline 7
refused "needs exactly 4 ranks (mpirun -np 4)" "np 2, --pipeline 4" 2 --pipeline 4
refused "cannot be combined with --zero1" "--pipeline with --zero1" 2 --pipeline 2 --zero1
refused "must be a multiple of it" "batch 64, 3 micro-batches" 2 --pipeline 2 --micro-batches 3
"$LATHE" train examples/mlp.nn --data "$DIGITS" --epochs 1 --pipeline 2 --quiet >"$tmp/p1.txt" 2>&1 &&
  bad "--pipeline in one process: not refused"
grep -q "needs exactly 2 ranks" "$tmp/p1.txt" && ok || bad "--pipeline in one process: $(cat "$tmp/p1.txt")"

# ---- 5. a stopped rank: the others end after --comm-timeout 3, naming it; data parallel and a pipeline stage
# (rank 1 is the last stage: rank 0 waits for its gradients in a point-to-point receive) ----
stopped() { # NAME ARGS...: train with ARGS on 2 ranks, stop rank 1 with SIGSTOP, expect the job to end naming it
  local name=$1
  shift
  mpi 2 train examples/mlp.nn --data "$DIGITS" --epochs 100000 --comm-timeout 3 --quiet "$@" >"$tmp/h.txt" 2>&1 &
  local job=$! victim= mp p
  for _ in $(seq 300); do
    mp=$(pgrep -P "$job" -x mpirun || echo "$job")
    for p in $(pgrep -P "$mp"); do
      tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -q '^OMPI_COMM_WORLD_RANK=1$' && victim=$p
    done
    [ -n "$victim" ] && break
    sleep 0.1
  done
  sleep 2 # past start-up: training
  if [ -n "$victim" ] && kill -0 "$job" 2>/dev/null; then
    local t0
    t0=$(date +%s%N)
    kill -STOP "$victim"
    for _ in $(seq 300); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
    local ms=$((($(date +%s%N) - t0) / 1000000))
    if kill -0 "$job" 2>/dev/null; then bad "$name: rank 1 stopped: the job still runs after 30 s"; kill -9 "$victim" "$job"
    else ok; echo "$name: stopping rank 1 ended the job in $ms ms (--comm-timeout 3)"; fi
    wait "$job" 2>/dev/null
    grep -q "rank 1 did not answer" "$tmp/h.txt" && ok || bad "$name: the message does not name rank 1: $(cat "$tmp/h.txt")"
    kill -CONT "$victim" 2>/dev/null
    kill -9 "$victim" 2>/dev/null
  else
    bad "$name: could not find rank 1 or the job had ended: $(cat "$tmp/h.txt")"
    kill -9 "$job" 2>/dev/null
  fi
}
stopped "data parallel"
stopped "pipeline stage" --pipeline 2
finish

#!/usr/bin/env bash
# mpi_bench.sh [LATHE] -- issue 19's speed numbers (docs/distributed.md):
# samples/s of training steps with 1 rank of 1 thread and 2 ranks of 1
# thread each (mpirun -np 2 lathe train; the global batch split over the
# ranks), the share of the step spent waiting for communication, and
# PyTorch's DistributedDataParallel over gloo with 1 and 2 processes of 1
# thread (bench/ddp_peer.py), on the digits MLP at batch 256 and the
# char-GPT (examples/gpt.nn) at batch 16. Lathe's samples/s is the global
# batch times the steps over the wall time inside training steps (lathe
# train --json: step_seconds, rank 0's); PyTorch's is the global batch over
# the median step. Run on an idle machine: two ranks need two free cores.
set -euo pipefail
LATHE=${1:-build/lathe}
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
DIGITS=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
MLP_EPOCHS=${MLP_EPOCHS:-25}     # 4 steps of 256 per epoch (60% of 1797 rows)
GPT_BYTES=${GPT_BYTES:-160000}   # about 140 steps of 16 windows of 64
# one compute thread per rank, and no idle OpenBLAS threads either (docs/distributed.md, "Threads")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LATHE_THREADS=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat /usr/share/games/fortunes/{fortunes,wisdom,literature,people,humorists,science} 2>/dev/null | head -c "$GPT_BYTES" >"$tmp/text.txt" || true  # head closes the pipe early
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# lathe_rate NP MODEL BATCH ARGS...: "samples/s comm%"
lathe_rate() {
  local np=$1 model=$2 batch=$3; shift 3
  local cmd=("$LATHE" train "$model" --batch "$batch" --json --quiet "$@")
  if [ "$np" -gt 1 ]; then cmd=(mpirun -np "$np" --oversubscribe -x LATHE_THREADS -x OPENBLAS_NUM_THREADS "${cmd[@]}"); fi
  "${cmd[@]}" 2>/dev/null | tail -1 | "$PY" -c '
import json, sys
r = json.loads(sys.stdin.read()); b = int(sys.argv[1])
print("%.0f %.1f" % (r["steps"] * b / r["step_seconds"], 100 * r["comm_seconds"] / r["step_seconds"]))' "$batch"
}

# "median-step-rate wall-rate" (bench/ddp_peer.py)
ddp_rate() { "$PY" bench/ddp_peer.py "$@" | "$PY" -c 'import json, sys; r = json.load(sys.stdin); print("%.0f %.0f" % (r["samples_per_s"], r["wall_samples_per_s"]))'; }

row() { # NAME MODEL BATCH DDPNAME DDPSTEPS ARGS...
  local name=$1 model=$2 batch=$3 dname=$4 dsteps=$5; shift 5
  read -r l1 _ <<<"$(lathe_rate 1 "$model" "$batch" "$@")"
  read -r l2 c2 <<<"$(lathe_rate 2 "$model" "$batch" "$@")"
  local t1 t2 w2
  read -r t1 _ <<<"$(ddp_rate "$dname" --batch "$batch" --procs 1 --steps "$dsteps")"
  read -r t2 w2 <<<"$(ddp_rate "$dname" --batch "$batch" --procs 2 --steps "$dsteps")"
  printf '%-14s %10s %10s %7.2fx %8s%% %10s %10s %7.2fx %8.2fx %10s\n' "$name" "$l1" "$l2" "$(echo "$l2 / $l1" | bc -l)" \
    "$c2" "$t1" "$t2" "$(echo "$t2 / $t1" | bc -l)" "$(echo "$l2 / $t2" | bc -l)" "$w2"
}

printf '%-14s %10s %10s %8s %9s %10s %10s %8s %9s %10s\n' workload "lathe 1x1" "lathe 2x1" scaling "comm" "ddp 1x1" \
  "ddp 2x1" scaling "vs ddp" "ddp2 wall"
row mlp_b256 examples/mlp.nn 256 mlp 100 --data "$DIGITS" --epochs "$MLP_EPOCHS"
row gpt_char_b16 examples/gpt.nn 16 gpt 30 --data "$tmp/text.txt" --epochs 1
echo "samples/s of the global batch; comm: the share of lathe's 2-rank step spent inside collectives (rank 0)"
echo "ddp: over the median step (a barrier before each); ddp2 wall: over the whole timed loop, as lathe counts"

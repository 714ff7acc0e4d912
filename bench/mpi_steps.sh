#!/usr/bin/env bash
# mpi_steps.sh [LATHE] [ROUNDS] -- issue 19's MLP scaling on a machine other
# jobs load (docs/distributed.md, "Speed"): bench/mpi_bench.sh's rate is the
# mean step, which on shared cores mostly measures how long the ranks sat
# descheduled. Here rank 0 writes every step's time (LATHE_STEP_TIMES) and
# the quickest steps are compared: the 10th, 25th and 50th percentile of
# the step with 1 rank of 1 thread and with 2 ranks of 1 thread each (the
# digits MLP, global batch 256, 400 steps each), the ratio, and the share
# of those 2-rank steps spent inside collectives. ROUNDS (default 3) runs
# the pair in turn, each round printing the load average first. Each round
# also times 1 rank at 128 rows (one rank's share of the work, with no
# collectives): 1 rank at 256 over that is the scaling 2 ranks would reach
# if their collectives cost nothing ("ceiling").
set -euo pipefail
LATHE=${1:-build/lathe}
ROUNDS=${2:-3}
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
DIGITS=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
EPOCHS=${EPOCHS:-100} # 4 steps of 256 per epoch
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LATHE_THREADS=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
args=(train examples/mlp.nn --data "$DIGITS" --batch 256 --epochs "$EPOCHS" --json --quiet)
half=(train examples/mlp.nn --data "$DIGITS" --batch 128 --epochs "$EPOCHS" --json --quiet)
for _ in $(seq "$ROUNDS"); do
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  LATHE_STEP_TIMES=$tmp/one.txt "$LATHE" "${args[@]}" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
  LATHE_STEP_TIMES=$tmp/half.txt "$LATHE" "${half[@]}" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
  LATHE_STEP_TIMES=$tmp/two.txt mpirun -np 2 --oversubscribe -x LATHE_THREADS -x OPENBLAS_NUM_THREADS \
    -x LATHE_STEP_TIMES "$LATHE" "${args[@]}" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
  "$PY" - "$tmp/one.txt" "$tmp/two.txt" "$tmp/half.txt" <<'EOF'
import sys
def steps(path):
    with open(path) as f:
        return sorted((float(a), float(b)) for a, b in (line.split() for line in f))
one, two, half = steps(sys.argv[1]), steps(sys.argv[2]), steps(sys.argv[3])
out = []
for q in (10, 25, 50):
    a, b = one[len(one) * q // 100][0], two[len(two) * q // 100][0]
    quick = [s for s in two if s[0] <= b]  # the 2-rank steps up to this percentile
    comm = 100 * sum(c for _, c in quick) / sum(t for t, _ in quick)
    h = half[len(half) * q // 100][0]
    out.append("p%d: 1 rank %.3f ms, 2 ranks %.3f ms, %.2fx, comm %.1f%%; 1 rank at 128 rows %.3f ms, ceiling %.2fx"
               % (q, a * 1e3, b * 1e3, a / b, comm, h * 1e3, a / h))
print("  " + "\n  ".join(out))
EOF
done

# cx_skip.sh -- sourced (after lib/common.sh) by the MPI tests that run the CUDA backend on the CPU executor
# (cuda_mpi.sh, cuda_pipe.sh), called as SCRIPT LATHE LATHE_CX: sets CX and MPIRUN, skips LOUDLY without
# mpirun, a Lathe built with MPI or the executor's host compiler, then sources env.sh. Defines no_nccl, the
# tests' shared first check.
cx_name=$(basename "$0")
CX=${2:?usage: $cx_name LATHE LATHE_CX}
MPIRUN=$(command -v mpirun || true)
if [ -z "$MPIRUN" ] || ! "$LATHE" --version | grep -q "^distributed: mpi"; then
  echo "SKIPPED: $cx_name needs mpirun and a Lathe built with MPI: $("$LATHE" --version | grep '^distributed')"
  echo "0 passed, 0 failed"
  exit 0
fi
if ! command -v "${LATHE_CX_CXX:-g++}" >/dev/null; then
  echo "SKIPPED: $cx_name needs a host C++ compiler for the CPU executor (g++)"
  echo "0 passed, 0 failed"
  exit 0
fi
# the executor's compiled kernels outlive the test's $tmp (env.sh moves TMPDIR there): later runs are quick
export LATHE_CX_CACHE=${LATHE_CX_CACHE:-${TMPDIR:-/tmp}/lathe-cuexec-$(id -u)}
. "$(dirname "$0")/env.sh"

DIGITS=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz

# no_nccl [ARGS...]: with no NCCL, `mpirun -np 2 lathe train examples/mlp.nn --backend cuda ARGS` fails on every
# rank with one line naming NCCL and where it looked, and no rank hangs. The first rank to fail may end the job
# (MPI_Abort) before the other prints its line: at least one line, at most one per rank.
no_nccl() {
  LATHE_NCCL_LIB=/nonexistent/libnccl.so.2 ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 timeout 120 \
    "$MPIRUN" -np 2 --oversubscribe -x LATHE_THREADS -x LATHE_NCCL_LIB -x ASAN_OPTIONS "$LATHE" train examples/mlp.nn \
    --data "$DIGITS" --epochs 1 --backend cuda --quiet "$@" >"$tmp/nonccl.txt" 2>&1
  local rc=$? n
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && ok || bad "no NCCL: exit $rc (0: it trained; 124: it hung)"
  n=$(grep -c "NCCL not found (libnccl.so.2): looked in /nonexistent/libnccl.so.2" "$tmp/nonccl.txt")
  [ "$n" -ge 1 ] && [ "$n" -le 2 ] && ok ||
    bad "no NCCL: no line naming NCCL and where it looked: $(cat "$tmp/nonccl.txt")"
  grep -m1 "NCCL not found" "$tmp/nonccl.txt"
}

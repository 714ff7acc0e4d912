# cx_skip.sh -- sourced (after lib/common.sh) by the MPI tests that run the CUDA backend on the CPU executor
# (cuda_mpi.sh, cuda_pipe.sh), called as SCRIPT LATHE LATHE_CX: sets CX and MPIRUN, skips LOUDLY without
# mpirun, a Lathe built with MPI or the executor's host compiler, then sources env.sh.
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

# env.sh -- sourced by tests/mpi.sh and tests/pipeline.sh after lib/common.sh and the MPI check ($MPIRUN, $tmp):
# the environment mpirun needs here and the two helpers both scripts use.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LATHE_THREADS=1
# OpenMPI's shared-memory transport wants a writable session directory; keep it in $tmp
export OMPI_MCA_orte_tmpdir_base="$tmp" TMPDIR="$tmp"
# mpi N ARGS...: lathe ARGS on N ranks. In a sanitizer build, MPI_Init's own allocations (OpenMPI keeps them to
# the end) are not Lathe's leaks.
mpi() {
  local n=$1; shift
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 "$MPIRUN" -np "$n" --oversubscribe -x LATHE_THREADS \
    -x ASAN_OPTIONS "$LATHE" "$@"
}
# same A B WHAT: weights and optimizer state within 1e-5 (tests/mpi/cmp_weights.py); prints the difference
same() {
  local r
  if r=$(/usr/bin/python3 tests/mpi/cmp_weights.py "$1" "$2" 1e-5 2>&1); then ok; echo "$3: $r"; else bad "$3: $r"; fi
}

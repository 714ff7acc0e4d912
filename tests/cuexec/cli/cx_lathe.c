/* cx_lathe.c -- `lathe_cx`: the lathe command with the CPU executor
 * (tests/cuexec/) in the CUDA driver's place, so a test can run
 * `mpirun -np N lathe_cx train --backend cuda` without a GPU
 * (tests/mpi/cuda_mpi.sh). A test instrument, built beside the tests and
 * never installed: the product's lathe always talks to the real driver. */
#include "codegen/cuda/cu_driver.h"
#include "cx.h"

/* Before main: every CUDA program this process compiles runs on the executor. */
__attribute__((constructor)) static void cx_lathe_install(void) { cu_set_driver_factory(cx_driver); }

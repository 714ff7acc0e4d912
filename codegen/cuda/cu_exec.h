/* cu_exec.h -- the CUDA backend as the runtime sees it (runtime/api_*.c):
 * a graph compiled for the GPU of a cu_driver and run there
 * (codegen/cuda/cu_run.c). Kept apart from cu.h so the runtime needs no
 * plan or renderer types. */
#ifndef LATHE_CU_EXEC_H
#define LATHE_CU_EXEC_H

#include <stddef.h>

#include "ir/ir.h"

typedef struct cu_exec cu_exec;
/* A driver (cu_driver_create: the real one unless a test installed
 * another), g compiled for arch (NULL: the driver's GPU), every module
 * loaded, the device memory allocated. NULL with one line in msg (no
 * driver or GPU, a kernel not rendered, NVRTC's rejection, too little
 * device memory). g must outlive it. */
cu_exec *cu_exec_create(const ir_graph *g, const char *arch, char *msg, size_t n);
/* One run: inputs (per g->inputs, in their dtypes) and params (f32) in,
 * outputs (per g->outputs, in their dtypes) and the loss (NaN when none)
 * out, as cg_run. 0, or -1 with msg. */
int cu_exec_run(cu_exec *x, void *const *inputs, void *const *params, void *const *outputs, float *loss, char *msg,
                size_t n);
void cu_exec_free(cu_exec *x);

#endif

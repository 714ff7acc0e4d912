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
cu_exec *cu_exec_create(const ir_graph *g, const char *arch, int bf16, char *msg, size_t n);
/* One run: inputs (per g->inputs, in their dtypes) and params (f32) in,
 * outputs (per g->outputs, in their dtypes) and the loss (NaN when none)
 * out, as cg_run. 0, or -1 with msg. */
int cu_exec_run(cu_exec *x, void *const *inputs, void *const *params, void *const *outputs, float *loss, char *msg,
                size_t n);
void cu_exec_free(cu_exec *x);
/* Parameters stay on the device between runs: a run uploads them only when
 * the host's copy changed since the last successful run, which every host
 * write must report with cu_exec_params_changed (the runtime does so
 * wherever weights are set). A training step's committed update (output
 * out, the new value of parameter param) goes into the parameter's device
 * buffer with cu_exec_feedback, a copy on the device. Output out may stay on
 * the device, never copied out (cu_exec_keep_output: a decode step's key/value
 * caches). Runs after the first replay the step as a CUDA graph where the
 * driver offers graphs (LATHE_CUDA_GRAPH=0: never). */
void cu_exec_params_changed(cu_exec *x);
int cu_exec_feedback(cu_exec *x, int out, int param, char *msg, size_t n);
void cu_exec_keep_output(cu_exec *x, int out, int keep);
/* What compiling cost: planning and rendering, NVRTC's wall time (every
 * module; a module from the disk cache costs its load), the modules and how
 * many came from the cache (all: a warm compile, none: a cold one). */
typedef struct {
  double render_ms, nvrtc_ms;
  int modules, cache_hits, functions, launches;
} cu_exec_stats;
void cu_exec_get_stats(const cu_exec *x, cu_exec_stats *st);

/* sample_token on the device (cu_render_sample.c): any top-k up to 256
 * classes, above that a top-k up to this many (its picks live in shared
 * memory); runtime/generate.c samples on the host otherwise. */
enum { CU_SAMPLE_MAX_K = 1024 };

#endif

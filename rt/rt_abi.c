/* rt_abi.c -- the entry points generated code calls by name (lathe_rt.h),
 * as thin wrappers over the pool, and the per-thread profiling hook.
 * Nothing here refers to OpenBLAS (lathe_rt_sgemm is in blas.c): a model
 * whose code makes no BLAS call links without it. */
#include "rt/lathe_rt.h"

#include <stddef.h>

#include "rt/threadpool.h"

/* The pool is the only set of threads generated code uses: OpenBLAS runs
 * single-threaded and lathe_rt_sgemm splits big products over the same
 * pool. */
void lathe_rt_parallel_for(int64_t n, int64_t grain, void *body, void *cap) {
  rt_pool_fn fn;
  *(void **)&fn = body;
  rt_pool_for(n, grain, fn, cap);
}

/* Thread-local: two programs profiled on two threads tick their own. */
static _Thread_local lathe_rt_tick_hook tick_hook;
static _Thread_local void *tick_ctx;

void lathe_rt_prof_set(lathe_rt_tick_hook hook, void *ctx) {
  tick_hook = hook;
  tick_ctx = ctx;
}

void lathe_rt_prof_tick(int32_t seq) {
  if (tick_hook) tick_hook(tick_ctx, seq);
}

int lathe_rt_set_threads(int n) { return rt_pool_set_size(n < 1 ? 1 : n); }

void lathe_rt_default_threads(int n) { rt_pool_default_size(n < 1 ? 1 : n); }

void lathe_rt_normalize(float *x, int64_t rows, int64_t width, const float *shift, const float *scale) {
  for (int64_t i = 0; i < rows; i++, x += width)
    for (int64_t j = 0; j < width; j++) x[j] = (x[j] - shift[j]) * scale[j];
}

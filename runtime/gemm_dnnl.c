/* gemm_dnnl.c -- oneDNN's sgemm for the products it is faster on (see
 * gemm_dnnl.h).
 *
 * Which: products without transposes of at most 256 rows, 1024 columns and
 * a depth of 1024 -- the dense1024_b64/_b256 products and GPT-2-small's
 * attention output, as rt_sgemm cuts them into items. There, on one thread,
 * oneDNN 2.6's dnnl_sgemm measured 15-30% faster than OpenBLAS 0.3.21's
 * (bench/gemm_libs.c); on the larger GPT-2-small products the measurements
 * on the shared machine did not separate the two, so they stay OpenBLAS's.
 *
 * Threads: rt_sgemm calls it from the pool's threads, one item each, as it
 * calls OpenBLAS on one thread. Debian's oneDNN runs on OpenMP, so each
 * calling thread sets its own OpenMP thread count to 1 on its first call:
 * oneDNN then runs the product inline and starts no OpenMP team (whose
 * spinning threads would fight the pool, rt/blas.h). */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include "runtime/gemm_dnnl.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "rt/blas.h"

#ifdef LATHE_HAVE_DNNL
#include <dlfcn.h>
#include <dnnl.h>

enum { GDN_MAX_M = 256, GDN_MAX_N = 1024, GDN_MAX_K = 1024 };

static atomic_long calls;
static void (*omp_threads)(int); /* omp_set_num_threads, where oneDNN loaded OpenMP */
static _Thread_local int thread_ready;

int gdn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc) {
  if (ta || tb || M > GDN_MAX_M || N > GDN_MAX_N || K > GDN_MAX_K) return -1;
  if (!thread_ready) {
    if (omp_threads) omp_threads(1);
    thread_ready = 1;
  }
  if (dnnl_sgemm('N', 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) != dnnl_success) return -1;
  atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
  return 0;
}

int gdn_built(void) { return 1; }
long gdn_calls(void) { return atomic_load(&calls); }

static void install_once(void) {
  const char *e = getenv("LATHE_DNNL");
  if (!e || strcmp(e, "1") != 0) return; /* opt-in: see gemm_dnnl.h */
  *(void **)&omp_threads = dlsym(RTLD_DEFAULT, "omp_set_num_threads");
  rt_blas_set_provider(gdn_sgemm);
}
#else
int gdn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc) {
  (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B, (void)ldb, (void)beta;
  (void)C, (void)ldc;
  return -1;
}
int gdn_built(void) { return 0; }
long gdn_calls(void) { return 0; }
static void install_once(void) {}
#endif

#include <pthread.h>

void gdn_install(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, install_once);
}

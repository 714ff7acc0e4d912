/* rt_refgemm.c -- the sgemm of liblathe_rt_noblas (rt_cblas.h): a plain C
 * product for the run-time kernels (attention, recurrences) and
 * lathe_rt_sgemm when no BLAS is linked. Models emitted with
 * `--gemm generated` compute their own products in generated code and call
 * this only through those kernels. Compiled to nothing with OpenBLAS. */
#include "rt/rt_cblas.h"

#ifdef LATHE_RT_NOBLAS
#include <stdint.h>

void rt_ref_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
  (void)order;
  int tA = ta == CblasTrans, tB = tb == CblasTrans;
  for (int i = 0; i < M; i++) {
    float *c = C + (int64_t)i * ldc;
    for (int j = 0; j < N; j++) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
    /* i-k-j order: the inner loop runs along a row of B and of C (vectorised) when B is not transposed */
    for (int k = 0; k < K; k++) {
      float a = alpha * (tA ? A[(int64_t)k * lda + i] : A[(int64_t)i * lda + k]);
      if (tB)
        for (int j = 0; j < N; j++) c[j] += a * B[(int64_t)j * ldb + k];
      else
        for (int j = 0; j < N; j++) c[j] += a * B[(int64_t)k * ldb + j];
    }
  }
}
#else
typedef int rt_refgemm_unused; /* ISO C: a translation unit declares something */
#endif

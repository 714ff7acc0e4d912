/* test_gemm_dnnl.c -- the optional oneDNN GEMM (runtime/gemm_dnnl.c)
 * against OpenBLAS: rt_sgemm with the provider installed, on the products
 * it takes (no transposes, up to 256 x 1024 x 1024, whole and split over
 * the pool, beta 0 and 1) and on ones it leaves to OpenBLAS (transposed, too
 * large), each against a single-threaded cblas_sgemm: max error relative to
 * the result's scale <= 1e-5, and gdn_calls() counts exactly the products it
 * took (so the path under test is the one that ran). Built without oneDNN,
 * the provider is absent: rt_sgemm must then match OpenBLAS exactly and
 * gdn_calls() stays 0. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "rt/blas.h"
#include "rt/threadpool.h"
#include "runtime/gemm_dnnl.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

typedef struct {
  int ta, tb, M, N, K;
  float beta;
  int taken; /* oneDNN computes it (when built in) */
} dcase;

static const dcase cases[] = {
  {0, 0, 64, 1024, 1024, 0, 1},  /* dense1024_b64: split in two column halves */
  {0, 0, 256, 1024, 1024, 1, 1}, /* dense1024_b256, bias first (beta = 1) */
  {0, 0, 256, 768, 768, 0, 1},   /* GPT-2-small's attention output */
  {0, 0, 37, 93, 51, 1, 1},      /* odd and small: one call */
  {1, 0, 64, 256, 128, 0, 0},    /* A transposed (a weight gradient): OpenBLAS */
  {0, 1, 64, 256, 128, 0, 0},    /* B transposed: OpenBLAS */
  {0, 0, 256, 3072, 768, 0, 0},  /* GPT-2's fc: columns past 1024 a call */
};
enum { NCASES = sizeof cases / sizeof cases[0] };

static void run_case(const dcase *c) {
  size_t na = (size_t)c->M * c->K, nb = (size_t)c->K * c->N, nc = (size_t)c->M * c->N;
  float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *C = malloc(nc * sizeof *C);
  float *R = malloc(nc * sizeof *R);
  if (!A || !B || !C || !R) {
    CHECK(!"out of memory");
    free(A), free(B), free(C), free(R);
    return;
  }
  for (size_t i = 0; i < na; i++) A[i] = urand();
  for (size_t i = 0; i < nb; i++) B[i] = urand();
  for (size_t i = 0; i < nc; i++) C[i] = R[i] = urand();
  int lda = c->ta ? c->M : c->K, ldb = c->tb ? c->K : c->N;
  cblas_sgemm(CblasRowMajor, c->ta ? CblasTrans : CblasNoTrans, c->tb ? CblasTrans : CblasNoTrans, c->M, c->N, c->K,
              1.0f, A, lda, B, ldb, c->beta, R, c->N);
  long before = gdn_calls();
  rt_sgemm(CblasRowMajor, c->ta ? CblasTrans : CblasNoTrans, c->tb ? CblasTrans : CblasNoTrans, c->M, c->N, c->K,
           1.0f, A, lda, B, ldb, c->beta, C, c->N);
  long took = gdn_calls() - before;
  double worst = 0, scale = 1e-6;
  for (size_t i = 0; i < nc; i++) scale = fmax(scale, fabs(R[i]));
  for (size_t i = 0; i < nc; i++) worst = fmax(worst, fabs((double)C[i] - R[i]) / scale);
  printf("%s%s %d x %d x %d beta %g: oneDNN calls %ld, vs OpenBLAS %.2e\n", c->ta ? "T" : "N", c->tb ? "T" : "N",
         c->M, c->K, c->N, c->beta, took, worst);
  CHECK_MSG(worst <= 1e-5, "%dx%dx%d: vs OpenBLAS %.3g", c->M, c->K, c->N, worst);
  CHECK_MSG((took > 0) == (c->taken && gdn_built()), "%dx%dx%d: %ld oneDNN calls", c->M, c->K, c->N, took);
  if (!gdn_built()) CHECK_MSG(memcmp(C, R, nc * sizeof *C) == 0 || c->M * c->N * c->K >= 1 << 20,
                              "%dx%dx%d: without oneDNN, one call is OpenBLAS's", c->M, c->K, c->N);
  free(A), free(B), free(C), free(R);
}

int main(void) {
  rt_pool_set_size(2); /* split products as on the 2-core machines, even on one core */
  rt_blas_single();
  setenv("LATHE_DNNL", "1", 1); /* the provider (opt-in) is what is under test */
  gdn_install();
  printf("oneDNN %s\n", gdn_built() ? "built in" : "not built in: OpenBLAS alone");
  for (int i = 0; i < NCASES; i++) run_case(&cases[i]);
  return TEST_REPORT();
}

/* test_blas.c -- rt_sgemm, OpenBLAS's sgemm split over the runtime pool:
 * every transpose combination, products cut by rows and by columns (sizes
 * not multiples of the block), strided operands, alpha and beta, against a
 * double-precision loop; the columns past N in C's rows stay untouched; a
 * call repeated gives the same bits, and so does a call from inside a pool
 * loop (its parts run in turn on one thread); a product large enough to be
 * cut into more items than threads (taken as the threads finish: rt/blas.c)
 * too, checked at a sample of its elements. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt/blas.h"
#include "rt/threadpool.h"
#include "test.h"

enum { NO = 111, TR = 112, ROWMAJOR = 101 }; /* cblas's enum values */

typedef struct {
  int ta, tb, M, N, K, lda, ldb, ldc;
  float alpha, beta;
  float *A, *B, *C;
} prob;

static float rnd(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float)((double)(*s >> 40) / (double)(1 << 24) * 2 - 1);
}

static float *filled(size_t n, uint64_t *s) {
  float *p = malloc(n * sizeof *p);
  for (size_t i = 0; p && i < n; i++) p[i] = rnd(s);
  return p;
}

/* op(X)[i][k]: X stored row-major with leading dimension ld */
static double at(const float *X, int trans, int ld, int i, int k) {
  return trans ? X[(size_t)k * ld + i] : X[(size_t)i * ld + k];
}

static int make(prob *p, int ta, int tb, int M, int N, int K, uint64_t *s) {
  *p = (prob){ta, tb, M, N, K, (ta ? M : K) + 3, (tb ? K : N) + 5, N + 2, 0.5f, 0.25f, NULL, NULL, NULL};
  p->A = filled((size_t)(ta ? K : M) * p->lda, s);
  p->B = filled((size_t)(tb ? N : K) * p->ldb, s);
  p->C = filled((size_t)M * p->ldc, s);
  return p->A && p->B && p->C;
}

static void run(const prob *p, float *C) {
  rt_sgemm(ROWMAJOR, p->ta ? TR : NO, p->tb ? TR : NO, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb, p->beta,
           C, p->ldc);
}

/* worst |got - want| / (|alpha| sum |a b| + |beta c|) over every step-th
 * row and column; -1 if a padding column of C changed */
static double check(const prob *p, const float *got, int step) {
  double worst = 0;
  for (int i = 0; i < p->M; i += step) {
    for (int j = 0; j < p->N; j += step) {
      double acc = 0, mag = 0;
      for (int k = 0; k < p->K; k++) {
        double t = at(p->A, p->ta, p->lda, i, k) * at(p->B, !p->tb, p->ldb, j, k);
        acc += t, mag += fabs(t);
      }
      double c = p->C[(size_t)i * p->ldc + j];
      double want = p->alpha * acc + p->beta * c, scale = fabs(p->alpha) * mag + fabs(p->beta * c) + 1e-30;
      double e = fabs(got[(size_t)i * p->ldc + j] - want) / scale;
      worst = e > worst ? e : worst;
    }
    for (int j = p->N; j < p->ldc; j++)
      if (got[(size_t)i * p->ldc + j] != p->C[(size_t)i * p->ldc + j]) return -1;
  }
  return worst;
}

typedef struct {
  const prob *p;
  float *C;
} inner_job;

static void inner(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  inner_job *j = ctx;
  if (lo == 0 && hi > 0) run(j->p, j->C);
}

static void one(int ta, int tb, int M, int N, int K, int step, uint64_t *s) {
  prob p;
  size_t nc = (size_t)M * (size_t)(N + 2);
  float *c1 = malloc(nc * sizeof *c1), *c2 = malloc(nc * sizeof *c2), *c3 = malloc(nc * sizeof *c3);
  if (!make(&p, ta, tb, M, N, K, s) || !c1 || !c2 || !c3) {
    CHECK_MSG(0, "out of memory");
  } else {
    memcpy(c1, p.C, nc * sizeof *c1), memcpy(c2, p.C, nc * sizeof *c2), memcpy(c3, p.C, nc * sizeof *c3);
    run(&p, c1);
    run(&p, c2);
    inner_job j = {&p, c3};
    rt_pool_for(rt_pool_size(), 1, inner, &j); /* from inside a part: its parts in turn, on that thread */
    double e1 = check(&p, c1, step), e3 = check(&p, c3, step);
    CHECK_MSG(e1 >= 0 && e1 < 1e-5, "ta=%d tb=%d %dx%dx%d: error %g (-1: padding written)", ta, tb, M, N, K, e1);
    CHECK_MSG(e3 >= 0 && e3 < 1e-5, "inside a pool loop, ta=%d tb=%d %dx%dx%d: error %g", ta, tb, M, N, K, e3);
    CHECK_MSG(!memcmp(c1, c2, nc * sizeof *c1), "ta=%d tb=%d %dx%dx%d: two calls differ", ta, tb, M, N, K);
    CHECK_MSG(!memcmp(c1, c3, nc * sizeof *c1), "ta=%d tb=%d %dx%dx%d: inside a pool loop the bits differ", ta, tb, M,
              N, K);
  }
  free(p.A), free(p.B), free(p.C), free(c1), free(c2), free(c3);
}

int main(void) {
  uint64_t s = 7;
  static const int shapes[][3] = {
    {203, 131, 67}, /* cut by rows, M not a multiple of 16 */
    {61, 301, 90},  /* cut by columns */
    {256, 256, 64}, /* even blocks */
    {3, 5, 7},      /* too small to cut */
    {17, 1000, 80}, /* columns, a short M */
  };
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) one(ta, tb, shapes[i][0], shapes[i][1], shapes[i][2], 1, &s);
  one(0, 0, 1200, 1203, 1200, 37, &s); /* 1.7G multiply-adds: more items than threads */
  return TEST_REPORT();
}

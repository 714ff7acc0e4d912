/* test_gemm_pack.c -- products by constant weights on oneDNN's matmul
 * primitive with packed weights (runtime/gemm_pack.c).
 *
 * 1. rt_sgemm with a table entered, against a single-threaded cblas_sgemm
 *    on the same operands (max error relative to the result's scale
 *    <= 1e-5): the products it takes (M = 1, 2, 64, 256, odd shapes, beta
 *    0 and 1, B transposed, B a slice of a larger weight, a product large
 *    enough for more pieces than threads; in pieces on the pool, the
 *    default, and on an OpenMP team, LATHE_DNNL_OMP=1; each cut forced,
 *    LATHE_DNNL_CUT=rows and =columns) and the ones it leaves to
 *    OpenBLAS (A transposed, alpha != 1, B not inside a constant weight, B
 *    inside a parameter that is not constant, no table entered); the
 *    table's product counter says which path ran.
 * 2. The API: dense models compiled for inference on the llvm backend
 *    (rows 1 to 256)
 *    against the interpreter and against the same program with LATHE_DNNL=0
 *    (OpenBLAS alone); then the weights changed after a first run (init,
 *    load, written through a parameter view): the next run must give the
 *    new weights' result (it packs again), which a stale packing would not.
 * Built without oneDNN every product is OpenBLAS's, the counters stay 0,
 * and the comparisons still hold. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "lathe.h"
#include "rt/blas.h"
#include "rt/threadpool.h"
#include "runtime/gemm_pack.h"
#include "runtime/program.h"
#include "tests/test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int built(void) {
  int c = 1;
  int64_t b = 4;
  gpk_table *t = gpk_new(1, &c, &b);
  gpk_free(t);
  return t != NULL;
}

/* ---- 1. rt_sgemm with a table ---- */

typedef struct {
  int ta, tb, M, N, K;
  float alpha, beta;
  int where; /* B: 0 inside the constant weight, 1 in a non-constant parameter, 2 outside both, 3 no table */
  int ldb_extra; /* B a slice of a wider weight (its rows longer by this) */
  int taken;
  int lda_extra, ldc_extra; /* A's or C's rows longer than K or N (C a slice of a wider output) */
} pcase;

static const pcase cases[] = {
  {0, 0, 1, 1024, 1024, 1, 0, 0, 0, 1, 0, 0},   /* dense1024_b1's product */
  {0, 0, 2, 1024, 1024, 1, 1, 0, 0, 1, 0, 0},   /* two rows, bias first */
  {0, 0, 64, 1024, 1024, 1, 0, 0, 0, 1, 0, 0},  /* dense1024_b64 */
  {0, 0, 256, 1024, 1024, 1, 1, 0, 0, 1, 0, 0}, /* dense1024_b256, bias first */
  {0, 0, 37, 1000, 301, 1, 0, 0, 0, 1, 0, 0},   /* odd: the last piece narrower than the rest */
  {0, 0, 5, 77, 3, 1, 1, 0, 0, 1, 0, 0},        /* tiny: one piece */
  {0, 0, 64, 200, 96, 1, 0, 0, 56, 1, 0, 0},    /* B: columns of a wider weight (ldb > N) */
  {0, 1, 64, 512, 384, 1, 0, 0, 0, 1, 0, 0},    /* B transposed (a tied head) */
  {0, 0, 256, 2304, 768, 1, 1, 0, 0, 1, 0, 0},  /* GPT-2-small's qkv */
  {0, 0, 128, 8192, 1024, 1, 0, 0, 0, 1, 0, 0}, /* 2^30 multiply-adds: more pieces than threads */
  {0, 0, 97, 1000, 301, 1, 1, 0, 0, 1, 0, 0},   /* rows: pieces of 48 and 49 rows (two primitives) */
  {0, 0, 200, 130, 64, 1, 0, 0, 0, 1, 0, 0},    /* rows: C narrower than one column piece */
  {0, 1, 256, 320, 96, 1, 1, 0, 40, 1, 0, 0},   /* rows sharing a transposed slice of a weight */
  {0, 0, 256, 512, 256, 1, 1, 0, 0, 1, 24, 0}, /* A's rows strided: columns */
  {0, 0, 256, 512, 256, 1, 0, 0, 0, 1, 0, 72}, /* C's rows strided: columns */
  {0, 0, 1, 700, 300, 1, 1, 0, 0, 1, 5, 9},    /* one row, both strided */
  {1, 0, 64, 256, 128, 1, 0, 0, 0, 0, 0, 0},    /* A transposed: OpenBLAS */
  {0, 0, 64, 256, 128, 0.5f, 0, 0, 0, 0, 0, 0}, /* alpha != 1: OpenBLAS */
  {0, 0, 64, 256, 128, 1, 0.5f, 0, 0, 0, 0, 0}, /* beta neither 0 nor 1: OpenBLAS */
  {0, 0, 64, 256, 128, 1, 0, 1, 0, 0, 0, 0},    /* B in a parameter the program writes */
  {0, 0, 64, 256, 128, 1, 0, 2, 0, 0, 0, 0},    /* B an activation */
  {0, 0, 64, 256, 128, 1, 0, 3, 0, 0, 0, 0},    /* no table entered (a training step) */
};
enum { NCASES = sizeof cases / sizeof cases[0] };

static double max_rel_err(const float *C, const float *R, size_t n) {
  double scale = 1e-30, err = 0;
  for (size_t i = 0; i < n; i++) scale = fabs(R[i]) > scale ? fabs(R[i]) : scale;
  for (size_t i = 0; i < n; i++) err = fabs(C[i] - R[i]) > err ? fabs(C[i] - R[i]) : err;
  return err / scale;
}

static void run_case(const pcase *c, int have) {
  int ldb = (c->tb ? c->K : c->N) + c->ldb_extra, lda = (c->ta ? c->M : c->K) + c->lda_extra,
      ldc = c->N + c->ldc_extra;
  size_t na = (size_t)(c->ta ? c->K : c->M) * lda, nb = (size_t)(c->tb ? c->N : c->K) * ldb,
         nc = (size_t)c->M * ldc;
  /* params[0]: the constant weight, params[1]: a written one; B sits in one or in neither */
  float *W = malloc(nb * sizeof *W), *V = malloc(nb * sizeof *V), *X = malloc(nb * sizeof *X);
  float *A = malloc(na * sizeof *A), *C = malloc(nc * sizeof *C), *R = malloc(nc * sizeof *R);
  if (!W || !V || !X || !A || !C || !R) {
    CHECK(!"out of memory");
    free(W), free(V), free(X), free(A), free(C), free(R);
    return;
  }
  float *B = c->where == 1 ? V : c->where == 2 ? X : W;
  for (size_t i = 0; i < na; i++) A[i] = urand();
  for (size_t i = 0; i < nb; i++) B[i] = urand();
  for (size_t i = 0; i < nc; i++) C[i] = R[i] = urand();
  int constant[2] = {1, 0};
  int64_t bytes[2] = {(int64_t)(nb * sizeof *W), (int64_t)(nb * sizeof *V)};
  void *params[2] = {W, V};
  gpk_table *t = gpk_new(2, constant, bytes);
  CHECK(!t == !have);
  CBLAS_TRANSPOSE ta = c->ta ? CblasTrans : CblasNoTrans, tb = c->tb ? CblasTrans : CblasNoTrans;
  cblas_sgemm(CblasRowMajor, ta, tb, c->M, c->N, c->K, c->alpha, A, lda, B, ldb, c->beta, R, ldc);
  if (c->where != 3) gpk_enter(t, params);
  rt_sgemm(CblasRowMajor, ta, tb, c->M, c->N, c->K, c->alpha, A, lda, B, ldb, c->beta, C, ldc);
  if (c->where != 3) gpk_leave(t);
  double e = max_rel_err(C, R, nc);
  CHECK_MSG(e <= 1e-5, "%dx%dx%d ta %d tb %d: max error %g of the scale", c->M, c->K, c->N, c->ta, c->tb, e);
  CHECK_MSG(gpk_products(t) == (c->taken && have), "%dx%dx%d ta %d tb %d where %d: %ld products packed", c->M,
            c->K, c->N, c->ta, c->tb, c->where, gpk_products(t));
  if (c->taken && have) { /* a second run reuses the packing */
    gpk_enter(t, params);
    rt_sgemm(CblasRowMajor, ta, tb, c->M, c->N, c->K, c->alpha, A, lda, B, ldb, c->beta, C, ldc);
    gpk_leave(t);
    CHECK(gpk_products(t) == 2 && gpk_packings(t) == 1);
  }
  gpk_free(t);
  free(W), free(V), free(X), free(A), free(C), free(R);
}

/* ---- 1b. rt_sgemm_bias: C = A B + bias ---- */

typedef struct {
  int tb, M, N, K, where, ldb_extra; /* where: as pcase's */
} bcase;

static const bcase bcases[] = {
  {0, 64, 1024, 1024, 0, 0}, /* dense1024_b64 */
  {0, 97, 1000, 301, 0, 0},  /* odd rows and widths */
  {1, 256, 320, 96, 0, 40},  /* a transposed slice of a weight */
  {0, 1, 700, 300, 0, 0},    /* one row */
  {0, 256, 2304, 768, 0, 0}, /* GPT-2-small's qkv (B over 4 MiB) */
  {0, 64, 256, 128, 2, 0},   /* B an activation: the fill and OpenBLAS */
  {0, 64, 256, 128, 3, 0},   /* no table entered */
};

/* Against C filled with the bias and cblas_sgemm with beta 1. The bias is
 * inside oneDNN's kernel only where the pieces run on brgemm: row pieces
 * (cut = 'r': from 16 rows a thread) and single rows; column pieces of
 * several rows fill C first and still run packed. */
static void bias_case(const bcase *c, int have, int cut) {
  int ldb = (c->tb ? c->K : c->N) + c->ldb_extra;
  size_t na = (size_t)c->M * c->K, nb = (size_t)(c->tb ? c->N : c->K) * ldb, nc = (size_t)c->M * c->N;
  float *W = malloc(nb * sizeof *W), *X = malloc(nb * sizeof *X), *A = malloc(na * sizeof *A);
  float *C = malloc(nc * sizeof *C), *R = malloc(nc * sizeof *R), *bias = malloc((size_t)c->N * sizeof *bias);
  if (!W || !X || !A || !C || !R || !bias) {
    CHECK(!"out of memory");
    free(W), free(X), free(A), free(C), free(R), free(bias);
    return;
  }
  float *B = c->where == 2 ? X : W;
  for (size_t i = 0; i < na; i++) A[i] = urand();
  for (size_t i = 0; i < nb; i++) B[i] = urand();
  for (int j = 0; j < c->N; j++) bias[j] = urand();
  for (size_t i = 0; i < nc; i++) R[i] = bias[i % (size_t)c->N], C[i] = urand(); /* C's old values must not count */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, c->tb ? CblasTrans : CblasNoTrans, c->M, c->N, c->K, 1.0f, A, c->K, B, ldb,
              1.0f, R, c->N);
  int constant = 1;
  int64_t bytes = (int64_t)(nb * sizeof *W);
  void *params[1] = {W};
  gpk_table *t = gpk_new(1, &constant, &bytes);
  if (c->where != 3) gpk_enter(t, params);
  rt_sgemm_bias(c->tb, c->M, c->N, c->K, A, c->K, B, ldb, bias, C, c->N);
  if (c->where != 3) gpk_leave(t);
  double e = max_rel_err(C, R, nc);
  CHECK_MSG(e <= 1e-5, "bias %dx%dx%d tb %d cut %c: max error %g of the scale", c->M, c->K, c->N, c->tb, cut, e);
  int taken = have && c->where == 0;
  int inside = taken && (c->M == 1 || (cut == 'r' && rt_pool_size() >= 2 && c->M >= 16 * rt_pool_size()));
  CHECK_MSG(gpk_products(t) == taken && gpk_bias_products(t) == inside,
            "bias %dx%dx%d cut %c where %d: %ld products packed, %ld with the bias inside", c->M, c->K, c->N, cut,
            c->where, gpk_products(t), gpk_bias_products(t));
  gpk_free(t);
  free(W), free(X), free(A), free(C), free(R), free(bias);
}

/* ---- 2. through the API ---- */

/* relu: the bias and the relu one pass after a product with beta 0; none:
 * the bias C's first value (lathe_rt_sgemm_bias, cg_emit_fused) */
static lathe_program *dense_program(int M, int K, int N, int relu, lathe_backend be, lathe_error *err) {
  char src[256];
  snprintf(src, sizeof src, "model d\ninput x : f32[batch, %d]\noutput y = dense(x, %d, name=\"fc\")%s\n", K, N,
           relu ? " |> relu" : "");
  lathe_model *m = lathe_model_parse("d.nn", src, strlen(src), err);
  if (!m || lathe_model_bind(m, "batch", M, err) != 0) {
    lathe_model_free(m);
    return NULL;
  }
  lathe_options o = {.backend = be};
  lathe_program *p = lathe_compile(m, &o, err);
  lathe_model_free(m);
  return p;
}

/* run p on x and copy y out (n floats) */
static int run_y(lathe_program *p, const lathe_tensor *x, float *y, size_t n) {
  lathe_error err = {0};
  lathe_tensor t = {0};
  int rc = lathe_set_input(p, "x", x, &err) || lathe_run(p, &err) || lathe_get_output(p, "y", &t, &err);
  CHECK_MSG(rc == 0, "%s", err.message ? err.message : "");
  if (rc == 0) memcpy(y, t.data, n * sizeof *y);
  lathe_tensor_free(&t);
  lathe_error_clear(&err);
  return rc;
}

/* the three programs: packed (llvm), OpenBLAS alone (llvm, LATHE_DNNL=0), the interpreter */
enum { PK, OB, IN, NPROG };

static void compare(lathe_program *const *pr, const lathe_tensor *x, size_t n, const char *when) {
  float *y[NPROG];
  int ok = 1;
  for (int i = 0; i < NPROG; i++) y[i] = malloc(n * sizeof *y[i]), ok &= y[i] != NULL;
  for (int i = 0; ok && i < NPROG; i++) ok &= run_y(pr[i], x, y[i], n) == 0;
  if (ok) {
    double e1 = max_rel_err(y[PK], y[IN], n), e2 = max_rel_err(y[OB], y[IN], n);
    CHECK_MSG(e1 <= 1e-5 && e2 <= 1e-5, "%s: packed %g, OpenBLAS %g of the scale from the interpreter", when, e1, e2);
  }
  for (int i = 0; i < NPROG; i++) free(y[i]);
}

/* the weights of every program from seed */
static void init_all(lathe_program *const *pr, uint64_t seed) {
  lathe_error err = {0};
  for (int i = 0; i < NPROG; i++) CHECK(lathe_weights_init(pr[i], seed, &err) == 0);
  lathe_error_clear(&err);
}

static void api_case(int M, int K, int N, int relu, int have) {
  lathe_error err = {0};
  lathe_program *pr[NPROG] = {dense_program(M, K, N, relu, LATHE_BACKEND_LLVM, &err),
                              dense_program(M, K, N, relu, LATHE_BACKEND_LLVM, &err),
                              dense_program(M, K, N, relu, LATHE_BACKEND_INTERP, &err)};
  size_t nx = (size_t)M * K, ny = (size_t)M * N;
  float *xs = malloc(nx * sizeof *xs);
  CHECK_MSG(pr[PK] && pr[OB] && pr[IN] && xs, "%s", err.message ? err.message : "out of memory");
  if (!pr[PK] || !pr[OB] || !pr[IN] || !xs) goto done;
  for (size_t i = 0; i < nx; i++) xs[i] = urand();
  lathe_tensor x = {.dtype = LATHE_F32, .rank = 2, .shape = {M, K}, .data = xs};
  init_all(pr, 1);
  float y0;
  setenv("LATHE_DNNL", "0", 1); /* OB's first run makes no table */
  run_y(pr[OB], &x, &y0, 1);
  unsetenv("LATHE_DNNL");
  CHECK(pr[OB]->pack == NULL);
  char when[96];
  snprintf(when, sizeof when, "%dx%dx%d, first weights", M, K, N);
  compare(pr, &x, ny, when);
  /* the product goes through lathe_rt_sgemm above the small-product size (generated loops below); a
   * generated loop by a weight of 2^18 floats or more asks for the packed weights first (cg_emit.c) */
  int64_t macs = (int64_t)M * N * K;
  int packed = have && (macs > (1 << 20) || ((int64_t)K * N >= (1 << 18) && macs >= (1 << 18)));
  CHECK_MSG((gpk_products(pr[PK]->pack) > 0) == packed, "%dx%dx%d: %ld packed products", M, K, N,
            gpk_products(pr[PK]->pack));
  /* a dense layer's bias goes inside the kernel where the pieces are rows
   * (runtime/gemm_pack.c, bias_inside: 32 rows a thread, B up to 4 MiB) */
  int inside = packed && !relu && macs > (1 << 20) && rt_pool_size() >= 2 && M >= 32 * rt_pool_size();
  CHECK_MSG((gpk_bias_products(pr[PK]->pack) > 0) == inside, "%dx%dx%d: %ld products with the bias inside", M, K,
            N, gpk_bias_products(pr[PK]->pack));
  long packs = gpk_packings(pr[PK]->pack);
  /* new weights: lathe_weights_init */
  init_all(pr, 2);
  snprintf(when, sizeof when, "%dx%dx%d, after lathe_weights_init", M, K, N);
  compare(pr, &x, ny, when);
  CHECK(gpk_packings(pr[PK]->pack) == packs + packed);
  /* new weights written through a view (what checkpoints and evaluation copies do) */
  for (int i = 0; i < NPROG; i++) {
    lathe_tensor v = {0};
    int w = strcmp(lathe_param_name(pr[i], 0), "fc.weight") ? 1 : 0;
    CHECK(lathe_param_view(pr[i], w, &v) == 0 && v.rank == 2 && v.shape[0] == K);
    for (int64_t j = 0; v.data && j < (int64_t)K * N; j++) ((float *)v.data)[j] = 0.05f * (float)((j * 7919) % 41 - 20);
    /* and the bias (initialised to zeros, where a bias read wrongly would not show) */
    lathe_tensor b = {0};
    CHECK(lathe_param_view(pr[i], 1 - w, &b) == 0 && b.rank == 1 && b.shape[0] == N);
    for (int64_t j = 0; b.data && j < N; j++) ((float *)b.data)[j] = 0.5f * (float)((j * 31) % 17 - 8);
  }
  snprintf(when, sizeof when, "%dx%dx%d, after writing through a view", M, K, N);
  compare(pr, &x, ny, when);
  CHECK(gpk_packings(pr[PK]->pack) == packs + 2 * packed);
  /* weights loaded from a file */
  char path[] = "/tmp/lathe_gemm_pack_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  if (fd >= 0) {
    close(fd);
    lathe_program *q = dense_program(M, K, N, relu, LATHE_BACKEND_INTERP, &err);
    CHECK(q && lathe_weights_init(q, 3, &err) == 0 && lathe_weights_save(q, path, &err) == 0);
    for (int i = 0; i < NPROG; i++) CHECK(lathe_weights_load(pr[i], path, &err) == 0);
    snprintf(when, sizeof when, "%dx%dx%d, after lathe_weights_load", M, K, N);
    compare(pr, &x, ny, when);
    CHECK(gpk_packings(pr[PK]->pack) == packs + 3 * packed);
    lathe_program_free(q);
    remove(path);
  }
done:
  lathe_error_clear(&err);
  free(xs);
  for (int i = 0; i < NPROG; i++) lathe_program_free(pr[i]);
}

int main(void) {
  unsetenv("LATHE_DNNL");
  int have = built();
  printf("oneDNN packed weights %s (pool of %d threads)\n", have ? "built in" : "not built in: OpenBLAS alone",
         rt_pool_size());
  rt_blas_single();
  for (int omp = 0; omp <= 1; omp++) { /* pieces on the pool (the default), then an OpenMP team */
    setenv("LATHE_DNNL_OMP", omp ? "1" : "0", 1);
    for (int i = 0; i < NCASES; i++) run_case(&cases[i], have);
  }
  unsetenv("LATHE_DNNL_OMP");
  /* each cut forced on every case (the default picks by shape: a B over
   * 4 MiB by columns, so the qkv and 2^30 cases would never run by rows) */
  static const char *const cuts[] = {"rows", "columns"};
  for (int c = 0; c < 2; c++) {
    setenv("LATHE_DNNL_CUT", cuts[c], 1);
    for (int i = 0; i < NCASES; i++) run_case(&cases[i], have);
    for (size_t i = 0; i < sizeof bcases / sizeof bcases[0]; i++) bias_case(&bcases[i], have, cuts[c][0]);
  }
  unsetenv("LATHE_DNNL_CUT");
  api_case(64, 256, 192, 1, have);  /* packed, then the bias and relu */
  api_case(3, 700, 1000, 1, have);  /* three rows, odd widths */
  api_case(1, 512, 256, 1, have);   /* one row, a small weight: generated loops, no table use */
  api_case(1, 1024, 1024, 1, have); /* dense1024_b1: a generated loop that finds its weight packed */
  api_case(1, 1000, 300, 1, have);  /* one row, 3e5 floats of weight: packed, two odd column pieces */
  api_case(2, 1024, 1024, 1, have); /* two rows: a lathe_rt_sgemm call, packed */
  api_case(256, 128, 96, 1, have);  /* 256 rows */
  api_case(64, 1024, 1024, 0, have); /* dense1024_b64: row pieces, the bias inside the kernel */
  api_case(256, 128, 96, 0, have);   /* the same at 256 rows */
  api_case(2, 1024, 1024, 0, have);  /* two rows: column pieces, C filled with the bias first */
  return TEST_REPORT();
}

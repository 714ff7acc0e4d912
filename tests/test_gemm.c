/* test_gemm.c -- the generated matrix product (cg_options.gemm =
 * CG_GEMM_GENERATED, LATHE_GEMM=generated) against OpenBLAS's and the
 * reference interpreter:
 *  - products past the small-product size (those that call lathe_rt_sgemm
 *    otherwise) with every transpose flag, batched, with shared weights,
 *    broadcast batches, tails of every width and a fused epilogue: max error
 *    relative to the result's scale <= 1e-5, bit-identical reruns, and no
 *    lathe_rt_sgemm left in the generated module (so the path under test is the
 *    one that ran);
 *  - every example model's forward pass and three training steps (the
 *    products of the backward pass: transposed operands, conv's weight
 *    gradient, a recurrence's accumulating products) with generated products
 *    against OpenBLAS and the interpreter. Training compares the weights
 *    after the steps, with plain SGD in place of the model's optimizer:
 *    Adam's first steps are lr * sign(gradient), so a gradient that is 0 on
 *    one backend and 1e-12 on another would move a weight by lr on one only,
 *    which says nothing about the products. */
#include <stdlib.h>
#include <string.h>

#include "codegen/llvm/cg.h"
#include "ir.h"
#include "lathe.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* max |a - b| / max |b| over n floats */
static double scaled_err(const float *a, const float *b, int64_t n) {
  double worst = 0, scale = 1e-6;
  for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
  for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]) / scale);
  return worst;
}

/* ---- products, at the backend's level ---- */

typedef struct {
  int flags;       /* attr.i: 1 = A stored transposed, 2 = B is */
  int a[5], b[5];  /* rank, dims as stored */
  int epilogue;    /* + bias [N] then relu, fused after the product */
} pcase;

static const pcase cases[] = {
  {0, {2, 97, 131}, {2, 131, 83}, 0},        /* odd sizes: every column tail, a short row group */
  {1, {2, 131, 97}, {2, 131, 83}, 0},        /* A transposed (a weight gradient) */
  {2, {2, 97, 131}, {2, 83, 131}, 0},        /* B transposed (an input gradient): dot tiles, k tail */
  {3, {2, 131, 97}, {2, 83, 131}, 0},        /* both */
  {0, {2, 256, 64}, {2, 64, 256}, 0},        /* whole blocks only */
  {2, {2, 64, 256}, {2, 256, 256}, 0},
  {0, {3, 3, 130, 61}, {3, 3, 61, 190}, 0},  /* batched */
  {0, {3, 4, 100, 64}, {2, 64, 200}, 0},     /* shared weights: one tall product */
  {1, {3, 3, 61, 130}, {2, 61, 190}, 0},     /* shared weights, A transposed: per batch */
  {0, {2, 1, 5000}, {2, 5000, 300}, 0},      /* one row (batch-1 inference) */
  {0, {2, 2048, 700}, {2, 700, 3}, 0},       /* narrow C */
  {0, {2, 300, 64}, {2, 64, 300}, 1},        /* epilogue: bias, relu */
  {2, {2, 300, 64}, {2, 300, 64}, 1},
  {0, {2, 256, 256}, {2, 256, 256}, 0},      /* 16.8M multiply-adds: split over the pool */
};
enum { NCASES = sizeof cases / sizeof cases[0] };

static ir_shape shape_of(const int *d) {
  ir_shape s = {0};
  s.rank = d[0];
  for (int i = 0; i < d[0]; i++) s.d[i] = d[1 + i];
  return s;
}

/* y = a @ b (flags), or relu(a @ b + bias) */
static int build_case(ir_graph *g, const pcase *c) {
  char msg[256];
  ir_loc loc = {0};
  ir_shape sa = shape_of(c->a), sb = shape_of(c->b);
  int in[2] = {ir_add_input(g, "a", IR_F32, &sa, 0, loc), ir_add_input(g, "b", IR_F32, &sb, 0, loc)};
  ir_attr ma = {.i = c->flags};
  int y = ir_add(g, IR_MATMUL, in, 2, &ma, loc, msg, sizeof msg);
  if (y >= 0 && c->epilogue) {
    ir_shape sv = {.rank = 1, .d = {g->nodes[y].shape.d[g->nodes[y].shape.rank - 1]}};
    int ab[2] = {y, ir_add_input(g, "bias", IR_F32, &sv, 0, loc)};
    y = ir_add(g, IR_ADD, ab, 2, NULL, loc, msg, sizeof msg);
    ir_attr ra = {0};
    if (y >= 0) y = ir_add(g, IR_RELU, &y, 1, &ra, loc, msg, sizeof msg);
  }
  if (y < 0) fprintf(stderr, "case: %s\n", msg);
  else ir_add_output(g, "y", y);
  return y;
}

/* Run g on ins with the given product; out receives the result (n floats).
 * want_text: check what calls the module makes. */
static int run_backend(const ir_graph *g, void **ins, int gemm, float *out, int64_t n) {
  char msg[512];
  cg_options o = {.opt_level = 2, .keep_ir = 1, .gemm = gemm};
  cg_program *p = cg_compile(g, &o, msg, sizeof msg);
  CHECK_MSG(p != NULL, "compile: %s", msg);
  if (!p) return -1;
  float *again = malloc(sizeof(float) * (size_t)n);
  void *outs[1] = {out}, *outs2[1] = {again};
  int rc = cg_run(p, ins, NULL, outs, NULL, msg, sizeof msg) || cg_run(p, ins, NULL, outs2, NULL, msg, sizeof msg);
  CHECK_MSG(rc == 0, "run: %s", msg);
  CHECK_MSG(rc || memcmp(out, again, sizeof(float) * (size_t)n) == 0, "two runs differ (gemm %d)", gemm);
  char *text = cg_module_text(p);
  CHECK(text != NULL);
  /* the large product is a lathe_rt_sgemm call with BLAS, and none is left
   * with generated products */
  if (text) CHECK_MSG((strstr(text, "@lathe_rt_sgemm(") != NULL) == (gemm == CG_GEMM_BLAS), "gemm %d: lathe_rt_sgemm %s",
                      gemm, gemm == CG_GEMM_BLAS ? "missing" : "still called");
  free(text);
  free(again);
  cg_free(p);
  return rc ? -1 : 0;
}

static void test_case(const pcase *c) {
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "gemm");
  int y = build_case(&g, c);
  CHECK(y >= 0);
  if (y < 0) {
    ar_free(&A);
    return;
  }
  double **vals = calloc((size_t)g.nnodes, sizeof *vals);
  void *ins[3] = {0};
  for (int i = 0; i < g.ninputs; i++) {
    int64_t n = ir_numel(&g.inputs[i].shape);
    float *f = malloc(sizeof(float) * (size_t)n);
    vals[g.inputs[i].node] = malloc(sizeof(double) * (size_t)n);
    for (int64_t e = 0; e < n; e++) vals[g.inputs[i].node][e] = f[e] = urand();
    ins[i] = f;
  }
  int64_t n = ir_numel(&g.nodes[y].shape);
  float *ref = malloc(sizeof(float) * (size_t)n), *blas = malloc(sizeof(float) * (size_t)n);
  float *gen = malloc(sizeof(float) * (size_t)n);
  char msg[256];
  int ok = ir_interp(&g, IR_INTERP_F32, vals, msg, sizeof msg) == 0;
  CHECK_MSG(ok, "interp: %s", msg);
  if (ok) {
    for (int64_t e = 0; e < n; e++) ref[e] = (float)vals[y][e];
    ir_interp_release(&g, vals);
  }
  if (ok && run_backend(&g, ins, CG_GEMM_BLAS, blas, n) == 0 && run_backend(&g, ins, CG_GEMM_GENERATED, gen, n) == 0) {
    double ei = scaled_err(gen, ref, n), eb = scaled_err(gen, blas, n);
    printf("flags %d a %dx%dx%d b %dx%dx%d epi %d: generated vs interp %.2e, vs blas %.2e\n", c->flags, c->a[1],
           c->a[2], c->a[3], c->b[1], c->b[2], c->b[3], c->epilogue, ei, eb);
    CHECK_MSG(ei <= 1e-5 && eb <= 1e-5, "flags %d: generated vs interp %.3g, vs blas %.3g", c->flags, ei, eb);
  }
  for (int i = 0; i < g.ninputs; i++) free(vals[g.inputs[i].node]), free(ins[i]);
  free(vals), free(ref), free(blas), free(gen);
  ar_free(&A);
}

/* ---- the examples, through the public API (LATHE_GEMM picks the product) ---- */

static const struct {
  const char *path;
  int64_t batch;
  const char *x, *y;
  lathe_dtype xdt;
  int rank;
  int64_t shape[4]; /* x's; y is [batch] or [batch, T] */
  int ylim;         /* targets in [0, ylim) */
} ex[] = {
  {"examples/mlp.nn", 64, "x", "y", LATHE_F32, 2, {64, 64}, 10},
  {"examples/cnn.nn", 32, "x", "y", LATHE_F32, 4, {32, 1, 8, 8}, 10},
  {"examples/gpt.nn", 4, "tokens", "next", LATHE_I32, 2, {4, 64}, 96},
  {"examples/lstm.nn", 16, "tokens", "next", LATHE_I32, 2, {16, 32}, 96},
};
enum { NEX = sizeof ex / sizeof ex[0] };

static void fill(lathe_tensor *t, int lim) {
  int64_t n = lathe_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    float u = urand();
    if (t->dtype == LATHE_F32) ((float *)t->data)[i] = u;
    else ((int32_t *)t->data)[i] = (int32_t)((u + 1.0f) * 0.5f * (float)lim) % lim;
  }
}

/* The example's text with its train block's optimizer replaced by plain
 * SGD and no learning-rate schedule (malloc'd; NULL if unreadable). */
static char *sgd_text(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char line[512], *out = calloc(1, 1 << 16);
  size_t n = 0;
  while (out && fgets(line, sizeof line, f)) {
    const char *t = line + strspn(line, " ");
    if (strncmp(t, "schedule", 8) == 0) continue;
    if (strncmp(t, "optimizer", 9) == 0) snprintf(line, sizeof line, "  optimizer = sgd(lr=0.1)\n");
    size_t k = strlen(line);
    if (n + k >= 1 << 16) break;
    memcpy(out + n, line, k), n += k;
  }
  fclose(f);
  *len = n;
  return out;
}

/* The example compiled (train: a training step, with SGD) with backend b
 * and products gemm ("blas" or "generated"), weights from seed 5. */
static lathe_program *build(int e, int train, lathe_backend b, const char *gemm) {
  lathe_error err = {0};
  setenv("LATHE_GEMM", gemm, 1);
  size_t len = 0;
  char *src = train ? sgd_text(ex[e].path, &len) : NULL;
  lathe_model *m = train ? lathe_model_parse(ex[e].path, src ? src : "", len, &err) : lathe_model_load(ex[e].path, &err);
  free(src);
  lathe_program *p = NULL;
  if (m && lathe_model_bind(m, "batch", ex[e].batch, &err) == 0) {
    lathe_options o = {.backend = b};
    p = train ? lathe_compile_train(m, &o, &err) : lathe_compile(m, &o, &err);
    if (p && lathe_weights_init(p, 5, &err)) lathe_program_free(p), p = NULL;
  }
  CHECK_MSG(p != NULL, "%s: %s", ex[e].path, err.message ? err.message : "");
  lathe_error_clear(&err);
  lathe_model_free(m);
  unsetenv("LATHE_GEMM");
  return p;
}

/* Set the same seeded inputs (and targets when train) on every program. */
static void set_inputs(int e, lathe_program **p, int np, int train, uint64_t seed) {
  lathe_error err = {0};
  rng = seed;
  lathe_tensor x = {.dtype = ex[e].xdt, .rank = ex[e].rank};
  memcpy(x.shape, ex[e].shape, sizeof ex[e].shape);
  lathe_tensor y = {.dtype = LATHE_I32, .rank = ex[e].rank == 2 && ex[e].xdt == LATHE_I32 ? 2 : 1};
  memcpy(y.shape, ex[e].shape, sizeof ex[e].shape);
  x.data = malloc((size_t)lathe_tensor_bytes(&x));
  y.data = malloc((size_t)lathe_tensor_bytes(&y));
  fill(&x, ex[e].ylim);
  fill(&y, ex[e].ylim);
  for (int i = 0; i < np; i++) {
    CHECK(lathe_set_input(p[i], ex[e].x, &x, &err) == 0);
    if (train) CHECK_MSG(lathe_set_input(p[i], ex[e].y, &y, &err) == 0, "%s", err.message ? err.message : "");
    lathe_error_clear(&err);
  }
  free(x.data);
  free(y.data);
}

/* generated vs interp and vs blas: outputs (forward) or every weight
 * (after training) */
static void compare(int e, lathe_program **p, int train) {
  lathe_error err = {0};
  int n = train ? lathe_num_params(p[0]) : lathe_num_outputs(p[0]);
  double wi = 0, wb = 0, bi = 0;
  for (int i = 0; i < n; i++) {
    lathe_tensor t[3] = {{0}};
    for (int b = 0; b < 3; b++) {
      if (train) CHECK(lathe_param_view(p[b], i, &t[b]) == 0);
      else CHECK(lathe_get_output(p[b], lathe_output_name(p[b], i), &t[b], &err) == 0);
    }
    int64_t k = lathe_tensor_numel(&t[0]);
    if (t[0].data && t[1].data && t[2].data) {
      wi = fmax(wi, scaled_err(t[2].data, t[0].data, k));
      wb = fmax(wb, scaled_err(t[2].data, t[1].data, k));
      bi = fmax(bi, scaled_err(t[1].data, t[0].data, k));
    }
    if (!train)
      for (int b = 0; b < 3; b++) lathe_tensor_free(&t[b]);
  }
  printf("%-18s %-8s generated vs interp %.2e, vs blas %.2e (blas vs interp %.2e)\n", ex[e].path,
         train ? "3 steps" : "forward", wi, wb, bi);
  CHECK_MSG(wi <= 1e-5 && wb <= 1e-5, "%s %s: %.3g / %.3g", ex[e].path, train ? "training" : "forward", wi, wb);
  lathe_error_clear(&err);
}

static void test_example(int e, int train) {
  lathe_program *p[3] = {build(e, train, LATHE_BACKEND_INTERP, "blas"), build(e, train, LATHE_BACKEND_LLVM, "blas"),
                         build(e, train, LATHE_BACKEND_LLVM, "generated")};
  lathe_error err = {0};
  if (p[0] && p[1] && p[2]) {
    /* compiled while the OpenBLAS program of the same graph is alive: its
     * own code, not that program's (the shared-code table tells them apart) */
    lathe_compile_stats st;
    CHECK(lathe_program_stats(p[2], &st) == 0 && st.program_cache_hit == 0);
    for (int step = 0; step < (train ? 3 : 1); step++) {
      set_inputs(e, p, 3, train, 1234 + (uint64_t)step);
      for (int b = 0; b < 3; b++) CHECK_MSG(lathe_run(p[b], &err) == 0, "%s", err.message ? err.message : "");
      lathe_error_clear(&err);
    }
    compare(e, p, train);
  }
  for (int b = 0; b < 3; b++) lathe_program_free(p[b]);
}

/* A LATHE_GEMM that names neither choice is an error, not a silent default. */
static void test_env(void) {
  setenv("LATHE_GEMM", "cublas", 1);
  char msg[256];
  int b = cg_gemm_from_env(msg, sizeof msg);
  CHECK(b == -1);
  CHECK_MSG(strstr(msg, "LATHE_GEMM=cublas") != NULL, "%s", msg);
  unsetenv("LATHE_GEMM");
  CHECK(cg_gemm_from_env(msg, sizeof msg) == CG_GEMM_BLAS);
}

int main(void) {
  for (int c = 0; c < NCASES; c++) test_case(&cases[c]);
  for (int e = 0; e < NEX; e++) test_example(e, 0), test_example(e, 1);
  test_env();
  return TEST_REPORT();
}

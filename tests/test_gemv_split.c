/* test_gemv_split.c -- small products with a large B (a batch-1 dense
 * layer: codegen/llvm/cg_emit.c, sg_par) are split over the pool by blocks
 * of C's columns:
 *  - the kernel of such a product calls lathe_rt_parallel_for and no
 *    lathe_rt_sgemm (the path under test is the one that ran), and one with
 *    a small B calls neither (it stays on the calling thread);
 *  - results match the reference interpreter (max error relative to the
 *    result's scale <= 1e-5), with a fused bias + relu, column tails of
 *    every width and 1 to 4 rows;
 *  - a pool of 1 and of 2 threads give the same bits (every element of C is
 *    computed by one part, in K order, whatever the split). */
#include <stdlib.h>
#include <string.h>

#include "codegen/llvm/cg.h"
#include "ir.h"
#include "rt/threadpool.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

typedef struct {
  int M, K, N;
  int epilogue; /* + bias [N], relu */
  int split;    /* expected: the product goes to the pool */
} gcase;

static const gcase cases[] = {
  {1, 1024, 1024, 1, 1}, /* dense1024_b1 */
  {1, 1024, 1000, 0, 1}, /* a column tail past the whole units */
  {2, 512, 520, 1, 1},   /* two rows (one at a time), an 8-column tail */
  {3, 600, 513, 0, 1},   /* three rows, a 1-column tail */
  {4, 256, 1024, 1, 1},  /* a whole group of four rows */
  {1, 256, 512, 1, 0},   /* B of 128K floats: stays on this thread */
};
enum { NCASES = sizeof cases / sizeof cases[0] };

static int build(ir_graph *g, const gcase *c) {
  char msg[256];
  ir_loc loc = {0};
  ir_shape sa = {.rank = 2, .d = {c->M, c->K}}, sb = {.rank = 2, .d = {c->K, c->N}}, sv = {.rank = 1, .d = {c->N}};
  int in[2] = {ir_add_input(g, "a", IR_F32, &sa, 0, loc), ir_add_input(g, "b", IR_F32, &sb, 0, loc)};
  ir_attr ma = {0};
  int y = ir_add(g, IR_MATMUL, in, 2, &ma, loc, msg, sizeof msg);
  if (y >= 0 && c->epilogue) {
    int ab[2] = {y, ir_add_input(g, "bias", IR_F32, &sv, 0, loc)};
    y = ir_add(g, IR_ADD, ab, 2, NULL, loc, msg, sizeof msg);
    ir_attr ra = {0};
    if (y >= 0) y = ir_add(g, IR_RELU, &y, 1, &ra, loc, msg, sizeof msg);
  }
  if (y < 0) fprintf(stderr, "case: %s\n", msg);
  else ir_add_output(g, "y", y);
  return y;
}

/* max |a - b| / max |b| */
static double scaled_err(const float *a, const float *b, int64_t n) {
  double worst = 0, scale = 1e-6;
  for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
  for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]) / scale);
  return worst;
}

static void run_case(const gcase *c) {
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "gemv");
  int y = build(&g, c);
  CHECK(y >= 0);
  double **vals = calloc((size_t)g.nnodes, sizeof *vals);
  void *ins[3] = {0};
  for (int i = 0; y >= 0 && i < g.ninputs; i++) {
    int64_t n = ir_numel(&g.inputs[i].shape);
    float *f = malloc(sizeof(float) * (size_t)n);
    vals[g.inputs[i].node] = malloc(sizeof(double) * (size_t)n);
    for (int64_t e = 0; e < n; e++) vals[g.inputs[i].node][e] = f[e] = urand();
    ins[i] = f;
  }
  int64_t n = (int64_t)c->M * c->N;
  float *ref = malloc(sizeof(float) * (size_t)n), *one = malloc(sizeof(float) * (size_t)n);
  float *two = malloc(sizeof(float) * (size_t)n);
  char msg[512];
  int ok = y >= 0 && ir_interp(&g, IR_INTERP_F32, vals, msg, sizeof msg) == 0;
  CHECK_MSG(y < 0 || ok, "interp: %s", msg);
  if (ok) {
    for (int64_t e = 0; e < n; e++) ref[e] = (float)vals[y][e];
    ir_interp_release(&g, vals);
  }
  cg_options o = {.opt_level = 2, .keep_ir = 1};
  cg_program *p = ok ? cg_compile(&g, &o, msg, sizeof msg) : NULL;
  CHECK_MSG(!ok || p != NULL, "compile: %s", msg);
  if (p) {
    char *text = cg_module_text(p);
    CHECK(text != NULL);
    if (text) {
      CHECK_MSG((strstr(text, "@lathe_rt_parallel_for(") != NULL) == c->split, "%dx%dx%d: split %s", c->M, c->K, c->N,
                c->split ? "missing" : "unexpected");
      CHECK_MSG(strstr(text, "@lathe_rt_sgemm(") == NULL, "%dx%dx%d: lathe_rt_sgemm called", c->M, c->K, c->N);
    }
    free(text);
    void *o1[1] = {one}, *o2[1] = {two};
    rt_pool_set_size(1);
    int rc = cg_run(p, ins, NULL, o1, NULL, msg, sizeof msg);
    rt_pool_set_size(2);
    rc = rc || cg_run(p, ins, NULL, o2, NULL, msg, sizeof msg);
    CHECK_MSG(rc == 0, "run: %s", msg);
    if (rc == 0) {
      double e = scaled_err(two, ref, n);
      printf("%d x %d x %d (epilogue %d, split %d): vs interp %.2e\n", c->M, c->K, c->N, c->epilogue, c->split, e);
      CHECK_MSG(e <= 1e-5, "%dx%dx%d: vs interp %.3g", c->M, c->K, c->N, e);
      CHECK_MSG(memcmp(one, two, sizeof(float) * (size_t)n) == 0, "%dx%dx%d: 1 and 2 threads differ", c->M, c->K,
                c->N);
    }
    cg_free(p);
  }
  for (int i = 0; i < g.ninputs; i++) free(vals[g.inputs[i].node]), free(ins[i]);
  free(vals), free(ref), free(one), free(two);
  ar_free(&A);
}

int main(void) {
  rt_pool_set_size(2); /* two workers even on a one-core machine: the split really runs in two parts */
  for (int i = 0; i < NCASES; i++) run_case(&cases[i]);
  return TEST_REPORT();
}

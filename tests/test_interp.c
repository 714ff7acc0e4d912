/* test_interp.c -- the reference interpreter against PyTorch (float64).
 *
 * Every case of tests/fixtures/ops_fixtures.h (made by gen_ops.py) becomes a
 * one-op graph, run in F64 mode (error <= 1e-10) and F32 mode (<= 1e-5); the
 * error of a value is |got - want| / (|want| + 1e-3), relative for
 * ordinary values and absolute near zero. Every op of ops.def must have a
 * case. Then: a small multi-op graph, the F32 rounding, and the error cases
 * (bad embedding id, bad label, missing input, integer division by zero),
 * which must fail with a message and leave nothing allocated.
 */
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "test.h"
#include "fixtures/ops_fixtures.h"

#define TOL_F64 1e-10
#define TOL_F32 1e-5

static int covered[IR_NOPS];
static double maxerr[IR_NOPS][2]; /* [op][mode] */

static ir_shape shape_of(const fx_tensor *t) {
  ir_shape s = {.rank = t->rank};
  for (int i = 0; i < t->rank; i++) s.d[i] = t->d[i];
  return s;
}

static double *copy_values(const fx_tensor *t) {
  ir_shape s = shape_of(t);
  int64_t n = ir_numel(&s);
  double *v = malloc(sizeof(double) * (size_t)n);
  memcpy(v, fx_data + t->off, sizeof(double) * (size_t)n);
  return v;
}

/* Build the case's graph; returns the op node's id or -1. Inputs after the
 * first with a float dtype become parameters, so both leaf kinds are used. */
static int build(ir_graph *g, const fx_case *fc, int *leaf, char *msg, size_t mn) {
  ir_loc loc = {0};
  if (fc->op == IR_CONST) {
    int id = ir_add_const(g, (ir_dtype)fc->out.dtype, fc->attr.f, loc);
    if (id >= 0 && fc->nin == 1) {
      g->nodes[id].shape = shape_of(&fc->in[0]);
      g->nodes[id].data = fx_data + fc->in[0].off;
    }
    return id;
  }
  for (int k = 0; k < fc->nin; k++) {
    ir_shape s = shape_of(&fc->in[k]);
    char name[16];
    snprintf(name, sizeof name, "in%d", k);
    if (k > 0 && ir_dtype_is_float((ir_dtype)fc->in[k].dtype))
      leaf[k] = ir_add_param(g, name, (ir_dtype)fc->in[k].dtype, &s, IR_INIT_ZEROS, 0, 1, 1, loc);
    else
      leaf[k] = ir_add_input(g, name, (ir_dtype)fc->in[k].dtype, &s, 0, loc);
    if (leaf[k] < 0) {
      snprintf(msg, mn, "cannot create input %d", k);
      return -1;
    }
    covered[g->nodes[leaf[k]].op] = 1;
  }
  return ir_add(g, fc->op, leaf, fc->nin, &fc->attr, loc, msg, mn);
}

static void run_case(const fx_case *fc, ir_interp_mode mode) {
  arena A;
  ir_graph g;
  char msg[512] = "";
  int leaf[FX_MAXIN] = {0};
  ar_init(&A);
  ir_graph_init(&g, &A, "fixture");
  int id = build(&g, fc, leaf, msg, sizeof msg);
  CHECK_MSG(id >= 0, "%s: building the graph failed: %s", fc->name, msg);
  if (id < 0) {
    ar_free(&A);
    return;
  }
  ir_shape want_shape = shape_of(&fc->out);
  const ir_node *n = &g.nodes[id];
  CHECK_MSG(ir_shape_eq(&n->shape, &want_shape) && (int)n->dtype == fc->out.dtype,
            "%s: result type %s rank %d, want %s rank %d", fc->name, ir_dtype_name(n->dtype),
            n->shape.rank, ir_dtype_name((ir_dtype)fc->out.dtype), want_shape.rank);
  double **vals = calloc((size_t)g.nnodes, sizeof *vals);
  for (int k = 0; fc->op != IR_CONST && k < fc->nin; k++) vals[leaf[k]] = copy_values(&fc->in[k]);
  int rc = ir_interp(&g, mode, vals, msg, sizeof msg);
  CHECK_MSG(rc == 0, "%s: interp failed: %s", fc->name, msg);
  if (rc == 0 && ir_shape_eq(&n->shape, &want_shape)) {
    int64_t count = ir_numel(&want_shape);
    double worst = 0, tol = mode == IR_INTERP_F64 ? TOL_F64 : TOL_F32;
    int64_t at = 0;
    for (int64_t i = 0; i < count; i++) {
      double want = fx_data[fc->out.off + i], got = vals[id][i];
      double err = fabs(got - want) / (fabs(want) + 1e-3);
      if (!(err <= worst)) { /* NaN counts as worst */
        worst = isnan(err) ? INFINITY : err;
        at = i;
      }
    }
    CHECK_MSG(worst <= tol, "%s (%s): max error %.3g at %lld: got %.17g want %.17g", fc->name,
              mode == IR_INTERP_F64 ? "f64" : "f32", worst, (long long)at, vals[id][at],
              fx_data[fc->out.off + at]);
    if (worst > maxerr[fc->op][mode]) maxerr[fc->op][mode] = worst;
    covered[fc->op] = 1;
  }
  ir_interp_release(&g, vals);
  for (int k = 0; fc->op != IR_CONST && k < fc->nin; k++) free(vals[leaf[k]]);
  free(vals);
  ar_free(&A);
}

static void test_fixtures(void) {
  for (int i = 0; i < FX_NCASES; i++) {
    run_case(&fx_cases[i], IR_INTERP_F64);
    run_case(&fx_cases[i], IR_INTERP_F32);
  }
  printf("%-14s %12s %12s\n", "op", "max err f64", "max err f32");
  for (int op = 0; op < IR_NOPS; op++) {
    if (ir_ops[op].cat == IR_CAT_GRAD && !covered[op]) continue; /* checked by tests/test_grad.c */
    if (ir_ops[op].cat == IR_CAT_FUSED) continue; /* tests/test_fuse.c: against the unfused graph */
    CHECK_MSG(covered[op], "op '%s' has no fixture case (add one to gen_ops.py)", ir_ops[op].name);
    printf("%-14s %12.3g %12.3g\n", ir_ops[op].name, maxerr[op][IR_INTERP_F64], maxerr[op][IR_INTERP_F32]);
  }
}

/* ---- hand-built graphs ---- */

typedef struct {
  arena A;
  ir_graph g;
  double **vals;
  char msg[512];
} tgraph;

static void tg_init(tgraph *t) {
  ar_init(&t->A);
  ir_graph_init(&t->g, &t->A, "t");
  t->vals = NULL;
  t->msg[0] = '\0';
}

static int tg_input(tgraph *t, const char *name, ir_dtype dt, ir_shape s) {
  ir_loc loc = {0};
  return ir_add_input(&t->g, name, dt, &s, 0, loc);
}

static int tg_op(tgraph *t, int op, const int *in, int nin, const ir_attr *a) {
  ir_loc loc = {0};
  int id = ir_add(&t->g, op, in, nin, a, loc, t->msg, sizeof t->msg);
  CHECK_MSG(id >= 0, "ir_add %s: %s", ir_ops[op].name, t->msg);
  return id;
}

/* Run with caller values for the inputs (given in node order of `ids`). */
static int tg_run(tgraph *t, ir_interp_mode mode, const int *ids, double *const *inputs, int nin) {
  t->vals = calloc((size_t)t->g.nnodes, sizeof *t->vals);
  for (int k = 0; k < nin; k++) t->vals[ids[k]] = inputs[k];
  return ir_interp(&t->g, mode, t->vals, t->msg, sizeof t->msg);
}

static void tg_free(tgraph *t) {
  ir_interp_release(&t->g, t->vals);
  free(t->vals);
  ar_free(&t->A);
}

/* After a failure every interpreter-owned entry must be NULL again. */
static int all_released(const tgraph *t) {
  for (int i = 0; i < t->g.nnodes; i++) {
    int op = t->g.nodes[i].op;
    if (op != IR_INPUT && op != IR_PARAM && t->vals[i]) return 0;
  }
  return 1;
}

/* sum(softmax(relu(x @ W + b), axis 1)) == number of rows, and relu/matmul
 * values thread through the graph correctly. */
static void test_chain(void) {
  tgraph t;
  tg_init(&t);
  int x = tg_input(&t, "x", IR_F32, (ir_shape){2, {2, 3}});
  int w = tg_input(&t, "w", IR_F32, (ir_shape){2, {3, 4}});
  int b = tg_input(&t, "b", IR_F32, (ir_shape){1, {4}});
  int mm = tg_op(&t, IR_MATMUL, (int[]){x, w}, 2, NULL);
  int ad = tg_op(&t, IR_ADD, (int[]){mm, b}, 2, NULL);
  int re = tg_op(&t, IR_RELU, &ad, 1, NULL);
  int sm = tg_op(&t, IR_SOFTMAX, &re, 1, &(ir_attr){.axis = 1});
  int sum = tg_op(&t, IR_SUM, &sm, 1, &(ir_attr){.axis = -1});
  double xv[6] = {1, -2, 3, 0.5, 0.25, -1}, wv[12], bv[4] = {0.1, -0.2, 0.3, -5};
  for (int i = 0; i < 12; i++) wv[i] = (i % 5) - 2.0;
  int rc = tg_run(&t, IR_INTERP_F64, (int[]){x, w, b}, (double *[]){xv, wv, bv}, 3);
  CHECK_MSG(rc == 0, "chain: %s", t.msg);
  if (rc == 0) {
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 4; j++) {
        double s = bv[j];
        for (int k = 0; k < 3; k++) s += xv[i * 3 + k] * wv[k * 4 + j];
        CHECK_NEAR(t.vals[re][i * 4 + j], s > 0 ? s : 0, 1e-15);
      }
    CHECK_NEAR(t.vals[sum][0], 2.0, 1e-15);
  }
  tg_free(&t);
}

/* F32 mode rounds each float result; F64 keeps it; integers stay exact. */
static void test_rounding(void) {
  tgraph t;
  tg_init(&t);
  int x = tg_input(&t, "x", IR_F32, (ir_shape){1, {3}});
  int r = tg_op(&t, IR_RELU, &x, 1, NULL);
  int big = tg_op(&t, IR_MUL, (int[]){r, r}, 2, NULL);
  double xv[3] = {0.1, 1e30, 3e38};
  CHECK(tg_run(&t, IR_INTERP_F32, &x, (double *[]){xv}, 1) == 0);
  CHECK(t.vals[r][0] == (double)0.1f && t.vals[r][0] != 0.1);
  CHECK(isinf(t.vals[big][1]) && t.vals[big][1] > 0); /* 1e60 overflows float */
  CHECK(t.vals[r][2] == (double)3e38f);
  ir_interp_release(&t.g, t.vals);
  CHECK(all_released(&t));
  free(t.vals);
  CHECK(tg_run(&t, IR_INTERP_F64, &x, (double *[]){xv}, 1) == 0);
  CHECK(t.vals[r][0] == 0.1 && t.vals[big][1] == xv[1] * xv[1]);
  tg_free(&t);

  tg_init(&t);
  int a = tg_input(&t, "a", IR_I32, (ir_shape){1, {2}});
  int s = tg_op(&t, IR_MUL, (int[]){a, a}, 2, NULL);
  double av[2] = {65536, 46341}; /* squares wrap in int32 */
  CHECK(tg_run(&t, IR_INTERP_F32, &a, (double *[]){av}, 1) == 0);
  CHECK(t.vals[s][0] == 0 && t.vals[s][1] == (double)(int32_t)(uint32_t)(46341u * 46341u));
  tg_free(&t);
}

static void expect_error(tgraph *t, int rc, const char *must_contain) {
  CHECK_MSG(rc == -1, "expected an error containing '%s'", must_contain);
  CHECK_MSG(strstr(t->msg, must_contain) != NULL, "message '%s' lacks '%s'", t->msg, must_contain);
  CHECK(all_released(t));
}

static void test_embedding_error(void) {
  double bad[2][3] = {{0, 7, 2}, {0, -1, 2}};
  const char *want[2] = {"id 7 at position 1", "id -1 at position 1"};
  for (int c = 0; c < 2; c++) {
    tgraph t;
    tg_init(&t);
    int ids = tg_input(&t, "ids", IR_I32, (ir_shape){1, {3}});
    int w = tg_input(&t, "w", IR_F32, (ir_shape){2, {7, 2}});
    int e = tg_op(&t, IR_EMBEDDING, (int[]){ids, w}, 2, NULL);
    tg_op(&t, IR_RELU, &e, 1, NULL);
    double wv[14] = {0};
    expect_error(&t, tg_run(&t, IR_INTERP_F64, (int[]){ids, w}, (double *[]){bad[c], wv}, 2), want[c]);
    CHECK(strstr(t.msg, "embedding") != NULL);
    tg_free(&t);
  }
}

static void test_label_error(void) {
  double bad[2][2] = {{1, 5}, {-1, 0}};
  for (int c = 0; c < 2; c++) {
    tgraph t;
    tg_init(&t);
    int lg = tg_input(&t, "logits", IR_F32, (ir_shape){2, {2, 5}});
    int lb = tg_input(&t, "labels", IR_I32, (ir_shape){1, {2}});
    tg_op(&t, IR_CROSS_ENTROPY, (int[]){lg, lb}, 2, NULL);
    double lv[10] = {0};
    expect_error(&t, tg_run(&t, IR_INTERP_F32, (int[]){lg, lb}, (double *[]){lv, bad[c]}, 2),
                 "out of range for 5 classes");
    CHECK(strstr(t.msg, "cross_entropy") != NULL);
    tg_free(&t);
  }
}

static void test_missing_and_divzero(void) {
  tgraph t;
  tg_init(&t);
  int x = tg_input(&t, "x", IR_F32, (ir_shape){1, {2}});
  int e = tg_op(&t, IR_EXP, &x, 1, NULL);
  tg_op(&t, IR_EXP, &e, 1, NULL);
  expect_error(&t, tg_run(&t, IR_INTERP_F64, NULL, NULL, 0), "no value given for input 'x'");
  tg_free(&t);

  tg_init(&t);
  int a = tg_input(&t, "a", IR_I32, (ir_shape){1, {2}});
  int b = tg_input(&t, "b", IR_I32, (ir_shape){0, {0}});
  int d = tg_op(&t, IR_DIV, (int[]){a, b}, 2, NULL);
  tg_op(&t, IR_NEG, &d, 1, NULL);
  double av[2] = {3, 4}, bv[1] = {0};
  expect_error(&t, tg_run(&t, IR_INTERP_F64, (int[]){a, b}, (double *[]){av, bv}, 2), "division by zero");
  tg_free(&t);
}

int main(void) {
  test_fixtures();
  test_chain();
  test_rounding();
  test_embedding_error();
  test_label_error();
  test_missing_and_divzero();
  ir_interp_release(NULL, NULL); /* harmless */
  return TEST_REPORT();
}

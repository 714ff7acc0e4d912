/* test_optim.c -- passes/optimizer.c and the training-step ops.
 *
 * 1. Each optimizer (and the penalties, clipping) on a tiny graph whose
 *    gradients are known in closed form, L = sum(w * x) + 0.5 sum(b * b)
 *    (dL/dw = x, dL/db = b), for 3 steps, against an independent scalar
 *    re-implementation of torch.optim's formulas in double: the reference
 *    interpreter in f64 within 1e-12, the LLVM backend within 1e-5.
 * 2. The training-step ops (minimum, sign, randn, dropout_mask): LLVM equals
 *    the interpreter's f32 result bit for bit; the random ops have the right
 *    statistics and depend on the step counter. Every op from IR_MINIMUM on
 *    must be exercised here (test_llvm_grad.c leaves them to this file).
 * 3. Training-mode dropout: the gradient goes through the forward's mask.
 * 4. Gradient noise runs identically on both backends. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/llvm/cg.h"
#include "ir.h"
#include "passes/optimizer.h"
#include "passes/passes.h"
#include "test.h"

static int seen[IR_NOPS];
static const ir_loc L0 = {0};

static ir_train base_train(ir_optkind opt) {
  ir_train t;
  memset(&t, 0, sizeof t);
  t.present = 1, t.opt = opt, t.lr = 0.1, t.beta1 = 0.9, t.beta2 = 0.999, t.eps = 1e-8, t.alpha = 0.99;
  t.weight_decay = opt == IR_OPT_ADAMW ? 0.01 : 0;
  t.seed = 7;
  return t;
}

/* ---- running a step graph on either backend ---- */

typedef struct {
  arena A;
  ir_graph g;
  double **pv; /* per param: current values */
  double *x;   /* the input x */
  int64_t nx;
} stepper;

static void mark_ops(const ir_graph *g) {
  for (int i = 0; i < g->nnodes; i++) seen[g->nodes[i].op] = 1;
}

static double scalar_for(const ir_train *t, const char *name, int step) {
  if (!strcmp(name, OPT_IN_LR)) return t->lr;
  if (!strcmp(name, OPT_IN_BC1)) return 1 - pow(t->beta1, step);
  if (!strcmp(name, OPT_IN_BC2)) return 1 - pow(t->beta2, step);
  if (!strcmp(name, OPT_IN_NOISE)) return 0.5;
  if (!strcmp(name, OPT_IN_RNG)) return step;
  return NAN;
}

/* The value of input i at `step`: x, or a per-step scalar. */
static double input_value(const stepper *s, const ir_train *t, int i, int64_t e, int step) {
  const char *nm = s->g.inputs[i].name;
  return !strcmp(nm, "x") ? s->x[e] : scalar_for(t, nm, step);
}

/* Copy each "new.X" output value into X. */
static void commit(stepper *s, int o, const double *v) {
  const char *nm = s->g.outputs[o].name;
  if (strncmp(nm, OPT_NEW_PREFIX, strlen(OPT_NEW_PREFIX))) return;
  int pi = ir_find_param(&s->g, nm + strlen(OPT_NEW_PREFIX));
  CHECK(pi >= 0);
  if (pi < 0) return;
  int64_t n = ir_numel(&s->g.params[pi].shape);
  memcpy(s->pv[pi], v, sizeof(double) * (size_t)n);
}

static int run_interp(stepper *s, const ir_train *t, int steps) {
  ir_graph *g = &s->g;
  char msg[512];
  for (int step = 1; step <= steps; step++) {
    double **v = calloc((size_t)g->nnodes, sizeof *v);
    for (int i = 0; i < g->ninputs; i++) {
      int64_t n = ir_numel(&g->inputs[i].shape);
      double *b = malloc(sizeof(double) * (size_t)n);
      for (int64_t e = 0; e < n; e++) b[e] = input_value(s, t, i, e, step);
      v[g->inputs[i].node] = b;
    }
    for (int p = 0; p < g->nparams; p++) v[g->params[p].node] = s->pv[p];
    int rc = ir_interp(g, IR_INTERP_F64, v, msg, sizeof msg);
    CHECK_MSG(rc == 0, "interp: %s", msg);
    for (int o = 0; rc == 0 && o < g->noutputs; o++) commit(s, o, v[g->outputs[o].node]);
    if (rc == 0) ir_interp_release(g, v);
    for (int i = 0; i < g->ninputs; i++) free(v[g->inputs[i].node]);
    free(v);
    if (rc) return -1;
  }
  return 0;
}

static int run_llvm(stepper *s, const ir_train *t, int steps) {
  ir_graph *g = &s->g;
  char msg[512];
  cg_program *p = cg_compile(g, NULL, msg, sizeof msg);
  CHECK_MSG(p != NULL, "llvm: %s", msg);
  if (!p) return -1;
  void **ins = calloc((size_t)g->ninputs + 1, sizeof *ins), **ps = calloc((size_t)g->nparams + 1, sizeof *ps);
  void **outs = calloc((size_t)g->noutputs + 1, sizeof *outs);
  for (int i = 0; i < g->ninputs; i++) ins[i] = calloc((size_t)ir_numel(&g->inputs[i].shape), 8);
  for (int q = 0; q < g->nparams; q++) ps[q] = calloc((size_t)ir_numel(&g->params[q].shape), 4);
  for (int o = 0; o < g->noutputs; o++) outs[o] = calloc((size_t)ir_numel(&g->nodes[g->outputs[o].node].shape), 4);
  int rc = 0;
  for (int step = 1; step <= steps && rc == 0; step++) {
    for (int i = 0; i < g->ninputs; i++)
      for (int64_t e = 0; e < ir_numel(&g->inputs[i].shape); e++) {
        double val = input_value(s, t, i, e, step);
        if (g->inputs[i].dtype == IR_I64) ((int64_t *)ins[i])[e] = (int64_t)val;
        else ((float *)ins[i])[e] = (float)val;
      }
    for (int q = 0; q < g->nparams; q++)
      for (int64_t e = 0; e < ir_numel(&g->params[q].shape); e++) ((float *)ps[q])[e] = (float)s->pv[q][e];
    rc = cg_run(p, ins, ps, outs, NULL, msg, sizeof msg);
    CHECK_MSG(rc == 0, "llvm run: %s", msg);
    for (int o = 0; rc == 0 && o < g->noutputs; o++) {
      int64_t n = ir_numel(&g->nodes[g->outputs[o].node].shape);
      double *d = malloc(sizeof(double) * (size_t)n);
      for (int64_t e = 0; e < n; e++) d[e] = ((float *)outs[o])[e];
      commit(s, o, d);
      free(d);
    }
  }
  for (int i = 0; i < g->ninputs; i++) free(ins[i]);
  for (int q = 0; q < g->nparams; q++) free(ps[q]);
  for (int o = 0; o < g->noutputs; o++) free(outs[o]);
  free(ins), free(ps), free(outs);
  cg_free(p);
  return rc;
}

static void stepper_free(stepper *s) {
  for (int p = 0; p < s->g.nparams; p++) free(s->pv[p]);
  free(s->pv);
  ar_free(&s->A);
}

/* ---- 1. the update rules on L = sum(w * x) + 0.5 sum(b * b) ---- */

enum { NW = 6, NB = 3 };
static const double W0[NW] = {0.5, -0.25, 0.125, -1.0, 0.75, 0.0};
static const double B0[NB] = {0.3, -0.6, 0.9};
static const double X[NW] = {1.0, -2.0, 0.5, 0.25, -0.75, 1.5};

static int build_tiny(stepper *s, const ir_train *t) {
  memset(s, 0, sizeof *s);
  ar_init(&s->A);
  ir_graph *g = &s->g;
  ir_graph_init(g, &s->A, "tiny");
  char msg[512];
  ir_shape sw = {.rank = 2, .d = {2, 3}}, sb = {.rank = 1, .d = {NB}};
  ir_attr all = {0};
  all.axis = -1;
  int w = ir_add_param(g, "w", IR_F32, &sw, IR_INIT_ZEROS, 0, 1, 1, L0);
  int b = ir_add_param(g, "b", IR_F32, &sb, IR_INIT_ZEROS, 0, 1, 1, L0);
  int x = ir_add_input(g, "x", IR_F32, &sw, 0, L0);
  int lw = ir_add(g, IR_SUM, (int[]){ir_add(g, IR_MUL, (int[]){w, x}, 2, NULL, L0, msg, sizeof msg)}, 1, &all, L0, msg, sizeof msg);
  int bb = ir_add(g, IR_MUL, (int[]){b, b}, 2, NULL, L0, msg, sizeof msg);
  int lb = ir_add(g, IR_SUM, &bb, 1, &all, L0, msg, sizeof msg);
  int half = ir_add_const(g, IR_F32, 0.5, L0);
  g->loss = ir_add(g, IR_ADD, (int[]){lw, ir_add(g, IR_MUL, (int[]){lb, half}, 2, NULL, L0, msg, sizeof msg)}, 2, NULL, L0, msg, sizeof msg);
  CHECK(g->loss >= 0);
  int rc = ad_backward(g, NULL, 0, 0, msg, sizeof msg);
  CHECK_MSG(rc == 0, "autodiff: %s", msg);
  if (rc == 0) rc = opt_append(g, t, msg, sizeof msg);
  CHECK_MSG(rc == 0, "opt_append: %s", msg);
  if (rc == 0) rc = ir_verify(g, msg, sizeof msg);
  CHECK_MSG(rc == 0, "verify: %s", msg);
  mark_ops(g);
  s->pv = calloc((size_t)g->nparams, sizeof *s->pv);
  for (int p = 0; p < g->nparams; p++) s->pv[p] = calloc((size_t)ir_numel(&g->params[p].shape), sizeof(double));
  memcpy(s->pv[0], W0, sizeof W0);
  memcpy(s->pv[1], B0, sizeof B0);
  s->x = (double *)X, s->nx = NW;
  return rc;
}

/* torch.optim's formulas, one scalar at a time, in double. */
typedef struct {
  double p, buf, m, v;
} ref_el;

static double ref_grad(const ir_train *t, const ref_el *e, double g, double coef) {
  g *= coef;
  double wd = t->l2 + (t->opt != IR_OPT_ADAMW ? t->weight_decay : 0);
  double sgn = e->p > 0 ? 1 : e->p < 0 ? -1 : 0;
  return g + wd * e->p + t->l1 * sgn;
}

static void ref_update(const ir_train *t, ref_el *e, double d, int step) {
  switch (t->opt) {
  case IR_OPT_SGD:
    if (t->momentum != 0) {
      e->buf = t->momentum * e->buf + d;
      d = t->nesterov ? d + t->momentum * e->buf : e->buf;
    }
    e->p -= t->lr * d;
    break;
  case IR_OPT_ADAM:
  case IR_OPT_ADAMW:
    if (t->opt == IR_OPT_ADAMW) e->p *= 1 - t->lr * t->weight_decay;
    e->m = t->beta1 * e->m + (1 - t->beta1) * d;
    e->v = t->beta2 * e->v + (1 - t->beta2) * d * d;
    e->p -= t->lr / (1 - pow(t->beta1, step)) * e->m / (sqrt(e->v) / sqrt(1 - pow(t->beta2, step)) + t->eps);
    break;
  case IR_OPT_RMSPROP: {
    e->v = t->alpha * e->v + (1 - t->alpha) * d * d;
    double q = d / (sqrt(e->v) + t->eps);
    if (t->momentum > 0) e->buf = t->momentum * e->buf + q, q = e->buf;
    e->p -= t->lr * q;
    break;
  }
  default: break;
  }
}

static void ref_steps(const ir_train *t, int steps, double *w, double *b) {
  ref_el ew[NW], eb[NB];
  for (int i = 0; i < NW; i++) ew[i] = (ref_el){W0[i], 0, 0, 0};
  for (int i = 0; i < NB; i++) eb[i] = (ref_el){B0[i], 0, 0, 0};
  for (int step = 1; step <= steps; step++) {
    double sq = 0, coef = 1;
    for (int i = 0; i < NW; i++) sq += X[i] * X[i];
    for (int i = 0; i < NB; i++) sq += eb[i].p * eb[i].p;
    if (t->clip_norm > 0) coef = fmin(1.0, t->clip_norm / (sqrt(sq) + 1e-6));
    double gb[NB];
    for (int i = 0; i < NB; i++) gb[i] = eb[i].p;
    for (int i = 0; i < NW; i++) ref_update(t, &ew[i], ref_grad(t, &ew[i], X[i], coef), step);
    for (int i = 0; i < NB; i++) ref_update(t, &eb[i], ref_grad(t, &eb[i], gb[i], coef), step);
  }
  for (int i = 0; i < NW; i++) w[i] = ew[i].p;
  for (int i = 0; i < NB; i++) b[i] = eb[i].p;
}

static double max_rel(const double *a, const double *b, int n) {
  double e = 0;
  for (int i = 0; i < n; i++) e = fmax(e, fabs(a[i] - b[i]) / fmax(fabs(b[i]), 1e-3));
  return e;
}

static void check_rule(const char *what, ir_train t) {
  double w[NW], b[NB];
  ref_steps(&t, 3, w, b);
  for (int be = 0; be < 2; be++) {
    stepper s;
    if (build_tiny(&s, &t) == 0 && (be ? run_llvm(&s, &t, 3) : run_interp(&s, &t, 3)) == 0) {
      double e = fmax(max_rel(s.pv[0], w, NW), max_rel(s.pv[1], b, NB)), tol = be ? 1e-5 : 1e-12;
      printf("%-22s %-6s max rel err %.3g\n", what, be ? "llvm" : "interp", e);
      CHECK_MSG(e <= tol, "%s (%s): error %g", what, be ? "llvm" : "interp", e);
      /* every state is published */
      for (int p = 0; p < s.g.nparams; p++)
        CHECK_MSG(ir_find_output(&s.g, ar_printf(&s.A, "new.%s", s.g.params[p].name)) >= 0, "%s: no new.%s", what,
                  s.g.params[p].name);
    }
    stepper_free(&s);
  }
}

static void test_rules(void) {
  ir_train t = base_train(IR_OPT_SGD);
  check_rule("sgd", t);
  t.momentum = 0.9;
  check_rule("sgd momentum", t);
  t.nesterov = 1;
  check_rule("sgd nesterov", t);
  t = base_train(IR_OPT_SGD), t.l1 = 0.05, t.l2 = 0.1, t.clip_norm = 0.5;
  check_rule("sgd l1 l2 clip", t);
  t = base_train(IR_OPT_ADAM);
  check_rule("adam", t);
  t.weight_decay = 0.1, t.clip_norm = 1.0;
  check_rule("adam wd clip", t);
  t = base_train(IR_OPT_ADAMW);
  check_rule("adamw", t);
  t.weight_decay = 0.5, t.l2 = 0.01;
  check_rule("adamw wd l2", t);
  t = base_train(IR_OPT_RMSPROP);
  t.lr = 0.01;
  check_rule("rmsprop", t);
  t.momentum = 0.9, t.l1 = 0.01;
  check_rule("rmsprop momentum l1", t);
}

/* ---- 2. the training-step ops, LLVM against the interpreter ---- */

typedef struct {
  double *interp; /* per output */
  float *llvm;
} op_out;

/* Run g (inputs: "s" i64 scalar = step, "a"/"b" f32 from av/bv) on both backends. */
static void run_both(ir_graph *g, int64_t step, const double *av, const double *bv, double **iv, float **lv) {
  char msg[512];
  double **v = calloc((size_t)g->nnodes, sizeof *v);
  void **ins = calloc((size_t)g->ninputs + 1, sizeof *ins);
  for (int i = 0; i < g->ninputs; i++) {
    int64_t n = ir_numel(&g->inputs[i].shape);
    const double *src = !strcmp(g->inputs[i].name, "a") ? av : bv;
    double *d = malloc(sizeof(double) * (size_t)n);
    ins[i] = malloc(8 * (size_t)n);
    for (int64_t e = 0; e < n; e++) {
      d[e] = g->inputs[i].dtype == IR_I64 ? (double)step : src[e];
      if (g->inputs[i].dtype == IR_I64) ((int64_t *)ins[i])[e] = step;
      else ((float *)ins[i])[e] = (float)d[e];
    }
    v[g->inputs[i].node] = d;
  }
  int rc = ir_interp(g, IR_INTERP_F32, v, msg, sizeof msg);
  CHECK_MSG(rc == 0, "interp: %s", msg);
  void **outs = calloc((size_t)g->noutputs, sizeof *outs);
  for (int o = 0; o < g->noutputs; o++) {
    int64_t n = ir_numel(&g->nodes[g->outputs[o].node].shape);
    outs[o] = lv[o] = calloc((size_t)n, 4);
    iv[o] = calloc((size_t)n, sizeof(double));
    if (rc == 0) memcpy(iv[o], v[g->outputs[o].node], sizeof(double) * (size_t)n);
  }
  cg_program *p = cg_compile(g, NULL, msg, sizeof msg);
  CHECK_MSG(p != NULL, "llvm: %s", msg);
  if (p) CHECK_MSG(cg_run(p, ins, NULL, outs, NULL, msg, sizeof msg) == 0, "llvm run: %s", msg);
  cg_free(p);
  if (rc == 0) ir_interp_release(g, v);
  for (int i = 0; i < g->ninputs; i++) free(ins[i]), free(v[g->inputs[i].node]);
  free(ins), free(v), free(outs);
}

static int same_bits(const double *a, const float *b, int64_t n) {
  for (int64_t e = 0; e < n; e++) {
    if (isnan(a[e]) && isnan(b[e])) continue;
    if ((float)a[e] != b[e] || !signbit(a[e]) != !signbit(b[e])) return 0;
  }
  return 1;
}

static void test_ops(void) {
  enum { NR = 4099, NA = 15 };
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "ops");
  char msg[512];
  ir_shape s0 = {0}, sa = {.rank = 2, .d = {5, 3}}, sb = {.rank = 1, .d = {3}};
  int st = ir_add_input(&g, "s", IR_I64, &s0, 0, L0);
  int a = ir_add_input(&g, "a", IR_F32, &sa, 0, L0), b = ir_add_input(&g, "b", IR_F32, &sb, 0, L0);
  ir_attr rn = {0}, dm = {0};
  rn.nlist = 2, rn.list[0] = NR, rn.list[1] = 1, rn.n = 3, rn.k = 11;
  dm = rn, dm.f = 0.3;
  ir_add_output(&g, "min", ir_add(&g, IR_MINIMUM, (int[]){a, b}, 2, NULL, L0, msg, sizeof msg));
  ir_add_output(&g, "sign", ir_add(&g, IR_SIGN, &a, 1, NULL, L0, msg, sizeof msg));
  ir_add_output(&g, "randn", ir_add(&g, IR_RANDN, &st, 1, &rn, L0, msg, sizeof msg));
  ir_add_output(&g, "mask", ir_add(&g, IR_DROPOUT_MASK, &st, 1, &dm, L0, msg, sizeof msg));
  CHECK_MSG(ir_verify(&g, msg, sizeof msg) == 0, "%s", msg);
  /* bad uses are refused by the shape rules */
  CHECK(ir_add(&g, IR_RANDN, &a, 1, &rn, L0, msg, sizeof msg) < 0);
  dm.f = 1.0;
  CHECK(ir_add(&g, IR_DROPOUT_MASK, &st, 1, &dm, L0, msg, sizeof msg) < 0);
  mark_ops(&g);
  double av[NA], bv[3] = {0.0, NAN, -0.5};
  for (int i = 0; i < NA; i++) av[i] = i % 5 == 0 ? 0.0 : i % 7 == 0 ? NAN : (i - 7) * 0.25;
  av[1] = -0.0;
  double *iv[4], *iv2[4];
  float *lv[4], *lv2[4];
  run_both(&g, 5, av, bv, iv, lv);
  run_both(&g, 6, av, bv, iv2, lv2);
  const char *names[4] = {"minimum", "sign", "randn", "dropout_mask"};
  int64_t counts[4] = {NA, NA, NR, NR};
  for (int o = 0; o < 4; o++) CHECK_MSG(same_bits(iv[o], lv[o], counts[o]), "%s: llvm differs from interp", names[o]);
  CHECK(isnan(iv[0][1]) && iv[0][2] == -1.25 && iv[0][3] == -1.0 && isnan(iv[0][4]) && iv[0][5] == -0.5);
  CHECK(iv[1][0] == 0 && signbit(iv[1][1]) && iv[1][2] == -1 && iv[1][13] == 1 && isnan(iv[1][14]));
  double mean = 0, var = 0, kept = 0, diff = 0, mdiff = 0;
  for (int e = 0; e < NR; e++) mean += iv[2][e] / NR, var += iv[2][e] * iv[2][e] / NR, diff += iv[2][e] != iv2[2][e];
  int values_ok = 1;
  for (int e = 0; e < NR; e++) {
    kept += iv[3][e] != 0;
    mdiff += iv[3][e] != iv2[3][e];
    values_ok &= iv[3][e] == 0 || iv[3][e] == (double)(float)(1 / 0.7);
  }
  printf("randn mean %.3f var %.3f; dropout kept %.3f\n", mean, var, kept / NR);
  CHECK(fabs(mean) < 0.06 && fabs(var - 1) < 0.08);
  CHECK(fabs(kept / NR - 0.7) < 0.03 && values_ok);
  CHECK(diff > NR * 0.99 && mdiff > NR * 0.2); /* another step, other numbers */
  for (int o = 0; o < 4; o++) free(iv[o]), free(lv[o]), free(iv2[o]), free(lv2[o]);
  ar_free(&A);
}

/* ---- 3. training-mode dropout ---- */

static void test_dropout(void) {
  enum { N = 257 };
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "drop");
  char msg[512];
  ir_shape s = {.rank = 1, .d = {N}};
  ir_attr d = {0}, all = {0};
  d.f = 0.5, all.axis = -1;
  int w = ir_add_param(&g, "w", IR_F32, &s, IR_INIT_ZEROS, 0, 1, 1, L0);
  int x = ir_add_input(&g, "x", IR_F32, &s, 0, L0);
  int y = ir_add(&g, IR_DROPOUT, (int[]){ir_add(&g, IR_MUL, (int[]){w, x}, 2, NULL, L0, msg, sizeof msg)}, 1, &d, L0, msg, sizeof msg);
  g.loss = ir_add(&g, IR_SUM, &y, 1, &all, L0, msg, sizeof msg);
  ir_add_output(&g, "y", y);
  ir_train t = base_train(IR_OPT_SGD);
  t.lr = 1;
  /* unprepared dropout is refused by opt_append (a copy: it fails before any change) */
  ir_graph h = g;
  CHECK(opt_append(&h, &t, msg, sizeof msg) < 0 && strstr(msg, "opt_prepare_training"));
  g.train.seed = 9;
  CHECK_MSG(opt_prepare_training(&g, msg, sizeof msg) == 0, "%s", msg);
  CHECK_MSG(ad_backward(&g, NULL, 0, 0, msg, sizeof msg) == 0, "%s", msg);
  CHECK_MSG(opt_append(&g, &t, msg, sizeof msg) == 0, "%s", msg);
  CHECK_MSG(ir_verify(&g, msg, sizeof msg) == 0, "%s", msg);
  CHECK(opt_prepare_training(&g, msg, sizeof msg) < 0); /* after autodiff: refused */
  mark_ops(&g);
  stepper st = {0};
  st.g = g;
  double xv[N], w0[N];
  for (int i = 0; i < N; i++) xv[i] = 0.5 + i * 0.01, w0[i] = 1.0 - i * 0.003;
  st.x = xv, st.nx = N;
  st.pv = calloc((size_t)g.nparams, sizeof *st.pv);
  st.pv[0] = malloc(sizeof w0);
  memcpy(st.pv[0], w0, sizeof w0);
  CHECK(run_interp(&st, &t, 1) == 0);
  /* w' = w - x * mask: each element dropped (w' = w) or kept (w' = w - 2x) */
  int kept = 0, ok = 1;
  for (int i = 0; i < N; i++) {
    double dw = w0[i] - st.pv[0][i];
    int k = fabs(dw - 2 * xv[i]) < 1e-12;
    ok &= k || dw == 0;
    kept += k;
  }
  CHECK(ok && kept > N / 4 && kept < 3 * N / 4);
  double *interp_w = st.pv[0];
  st.pv[0] = malloc(sizeof w0);
  memcpy(st.pv[0], w0, sizeof w0);
  CHECK(run_llvm(&st, &t, 1) == 0);
  CHECK(max_rel(st.pv[0], interp_w, N) < 1e-6);
  free(interp_w), free(st.pv[0]), free(st.pv);
  ar_free(&A);
}

/* ---- 4. gradient noise, both backends ---- */

static void test_noise(void) {
  ir_train t = base_train(IR_OPT_SGD);
  t.grad_noise = 1;
  stepper a, b;
  int ra = build_tiny(&a, &t), rb = build_tiny(&b, &t);
  if (ra == 0 && rb == 0 && run_interp(&a, &t, 2) == 0 && run_llvm(&b, &t, 2) == 0) {
    CHECK(max_rel(a.pv[0], b.pv[0], NW) < 1e-5 && max_rel(a.pv[1], b.pv[1], NB) < 1e-5);
    double w[NW], bb[NB];
    t.grad_noise = 0;
    ref_steps(&t, 2, w, bb);
    CHECK(max_rel(a.pv[0], w, NW) > 1e-3); /* the noise is there */
  }
  stepper_free(&a), stepper_free(&b);
}

static void test_coverage(void) {
  for (int op = IR_MINIMUM; op <= IR_DROPOUT_MASK; op++) /* later rows: other stages' ops */
    CHECK_MSG(seen[op], "training-step op %s has no test case here", ir_ops[op].name);
}

int main(void) {
  test_rules();
  test_ops();
  test_dropout();
  test_noise();
  test_coverage();
  return TEST_REPORT();
}

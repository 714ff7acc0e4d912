/* test_grad.c -- the autodiff pass (passes/autodiff.c) checked two ways:
 *   1. every differentiable op (every op autodiff has a rule for) and every
 *      example model: backward gradients from the f64 interpreter against
 *      central finite differences of the loss, also in f64 (max relative
 *      error per op printed; must be <= 1e-6);
 *   2. the same graphs compiled by the LLVM backend: its f32 gradients
 *      against the f64 interpreter's (<= 1e-4).
 * Loss for an op test: sum(op(...) * R) with a fixed random R, so every
 * output element gets a distinct weight. Finite differences perturb a random
 * subset of at most FD_MAX elements of each parameter. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/llvm/cg.h"
#include "frontend.h"
#include "ir.h"
#include "passes/passes.h"
#include "test.h"

#define FD_MAX 12
#define FD_H 1e-5

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-3); }

/* ---- a graph with values for its leaves ---- */

typedef struct {
  arena A;
  ir_graph g;
  double **vals;   /* per node; leaves filled here */
  int64_t *lim;    /* per input: integer range, 0 = float */
} tgraph;

static void tg_init(tgraph *t, const char *name) {
  ar_init(&t->A);
  ir_graph_init(&t->g, &t->A, name);
  t->vals = NULL;
}

static void tg_free(tgraph *t) {
  if (t->vals) {
    ir_interp_release(&t->g, t->vals);
    for (int i = 0; i < t->g.nnodes; i++) free(t->vals[i]);
    free(t->vals);
  }
  ar_free(&t->A);
}

/* Fill every input and param with float-representable values: floats in
 * [lo, hi), integers in [0, lim). */
static void tg_fill(tgraph *t, double lo, double hi) {
  ir_graph *g = &t->g;
  t->vals = calloc((size_t)g->nnodes, sizeof *t->vals);
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    if (n->op != IR_INPUT && n->op != IR_PARAM) continue;
    int64_t cnt = ir_numel(&n->shape), lim = n->op == IR_INPUT && t->lim ? t->lim[n->attr.i] : 0;
    t->vals[i] = malloc(sizeof(double) * (size_t)cnt);
    for (int64_t e = 0; e < cnt; e++)
      t->vals[i][e] = lim > 0 ? (double)(int64_t)(urand() * (double)lim) : (double)(float)(lo + (hi - lo) * urand());
  }
}

static double loss_at(tgraph *t, char *msg, size_t mn) {
  if (ir_interp(&t->g, IR_INTERP_F64, t->vals, msg, mn)) return NAN;
  double l = t->vals[t->g.loss][0];
  ir_interp_release(&t->g, t->vals);
  return l;
}

/* Autodiff vs finite differences (f64), then LLVM vs the interpreter.
 * Returns the worst FD error; *cg_err gets the worst LLVM error (-1 = failed). */
static double check_graph(tgraph *t, const char *what, double *cg_err) {
  ir_graph *g = &t->g;
  char msg[512];
  *cg_err = -1;
  if (ad_backward(g, NULL, 0, 1, msg, sizeof msg)) {
    fprintf(stderr, "%s: autodiff: %s\n", what, msg);
    return INFINITY;
  }
  if (ir_verify(g, msg, sizeof msg)) {
    fprintf(stderr, "%s: %s\n", what, msg);
    return INFINITY;
  }
  double **v = realloc(t->vals, sizeof *v * (size_t)g->nnodes);
  t->vals = v;
  /* nodes added by autodiff: none are leaves the caller fills except consts */
  int nfilled = 0;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == IR_INPUT || g->nodes[i].op == IR_PARAM) nfilled = i + 1;
  for (int i = nfilled; i < g->nnodes; i++) v[i] = NULL;
  if (ir_interp(g, IR_INTERP_F64, v, msg, sizeof msg)) {
    fprintf(stderr, "%s: interp: %s\n", what, msg);
    return INFINITY;
  }
  /* keep the analytic gradients */
  int np = g->nparams;
  double **ag = calloc((size_t)np, sizeof *ag);
  for (int p = 0; p < np; p++) {
    int gn = g->grads[p];
    int64_t cnt = ir_numel(&g->params[p].shape);
    ag[p] = malloc(sizeof(double) * (size_t)cnt);
    memcpy(ag[p], v[gn], sizeof(double) * (size_t)cnt);
  }
  ir_interp_release(g, v);
  double worst = 0;
  for (int p = 0; p < np; p++) {
    double *x = v[g->params[p].node];
    int64_t cnt = ir_numel(&g->params[p].shape);
    for (int s = 0; s < FD_MAX && s < cnt; s++) {
      int64_t e = cnt <= FD_MAX ? s : (int64_t)(urand() * (double)cnt);
      double x0 = x[e];
      x[e] = x0 + FD_H;
      double lp = loss_at(t, msg, sizeof msg);
      x[e] = x0 - FD_H;
      double lm = loss_at(t, msg, sizeof msg);
      x[e] = x0;
      double fd = (lp - lm) / (2 * FD_H), err = rel(ag[p][e], fd);
      if (!(err <= worst)) worst = err;
      if (!(err <= 1e-6))
        fprintf(stderr, "%s: d loss / d %s[%lld]: autodiff %.12g, finite differences %.12g\n", what,
                g->params[p].name, (long long)e, ag[p][e], fd);
    }
  }
  /* the LLVM backend's gradients */
  cg_program *prog = cg_compile(g, NULL, msg, sizeof msg);
  if (!prog) {
    fprintf(stderr, "%s: compile: %s\n", what, msg);
  } else {
    void **ins = calloc((size_t)g->ninputs + 1, sizeof *ins), **ps = calloc((size_t)np + 1, sizeof *ps);
    void **outs = calloc((size_t)g->noutputs + 1, sizeof *outs);
    for (int i = 0; i < g->ninputs; i++) {
      const ir_input *in = &g->inputs[i];
      int64_t cnt = ir_numel(&in->shape);
      ins[i] = calloc((size_t)cnt, 8);
      for (int64_t e = 0; e < cnt; e++) {
        double d = v[in->node][e];
        if (in->dtype == IR_F32) ((float *)ins[i])[e] = (float)d;
        else if (in->dtype == IR_I64) ((int64_t *)ins[i])[e] = (int64_t)d;
        else if (ir_dtype_size(in->dtype) == 1) ((int8_t *)ins[i])[e] = (int8_t)d; /* bool (where's condition), i8, u8 */
        else ((int32_t *)ins[i])[e] = (int32_t)d;
      }
    }
    for (int p = 0; p < np; p++) {
      int64_t cnt = ir_numel(&g->params[p].shape);
      ps[p] = malloc(4 * (size_t)cnt);
      for (int64_t e = 0; e < cnt; e++) ((float *)ps[p])[e] = (float)v[g->params[p].node][e];
    }
    for (int o = 0; o < g->noutputs; o++)
      outs[o] = calloc((size_t)ir_numel(&g->nodes[g->outputs[o].node].shape), 8);
    float loss = 0;
    if (cg_run(prog, ins, ps, outs, &loss, msg, sizeof msg)) {
      fprintf(stderr, "%s: run: %s\n", what, msg);
    } else {
      *cg_err = 0;
      for (int p = 0; p < np; p++) {
        int o = ir_find_output(g, ar_printf(&t->A, "grad.%s", g->params[p].name));
        int64_t cnt = ir_numel(&g->params[p].shape);
        double scale = 0; /* errors relative to the gradient's largest entry */
        for (int64_t e = 0; e < cnt; e++) scale = fmax(scale, fabs(ag[p][e]));
        for (int64_t e = 0; o >= 0 && e < cnt; e++) {
          double err = fabs(((float *)outs[o])[e] - ag[p][e]) / fmax(scale, 1e-3);
          if (!(err <= *cg_err)) *cg_err = err;
          if (!(err <= 1e-4) && e < 1000000)
            fprintf(stderr, "%s: llvm grad.%s[%lld] %.9g vs interp %.9g\n", what, g->params[p].name, (long long)e,
                    ((float *)outs[o])[e], ag[p][e]), e = cnt;
        }
        if (o < 0) *cg_err = INFINITY;
      }
    }
    for (int i = 0; i < g->ninputs; i++) free(ins[i]);
    for (int p = 0; p < np; p++) free(ps[p]);
    for (int o = 0; o < g->noutputs; o++) free(outs[o]);
    free(ins), free(ps), free(outs);
    cg_free(prog);
  }
  for (int p = 0; p < np; p++) free(ag[p]);
  free(ag);
  return worst;
}

/* ---- per-op cases ---- */

#define MAXIN 10
typedef struct {
  int op, nin;
  ir_dtype dt[MAXIN];
  ir_shape sh[MAXIN];
  int64_t lim[MAXIN]; /* integer operands: range */
  ir_attr attr;
  double lo, hi;      /* float operand range */
} gcase;

static ir_shape S(int rank, int64_t a, int64_t b, int64_t c, int64_t d) {
  ir_shape s = {.rank = rank, .d = {a, b, c, d}};
  return s;
}
#define S0 S(0, 0, 0, 0, 0)
#define S1(a) S(1, a, 0, 0, 0)
#define S2(a, b) S(2, a, b, 0, 0)
#define S3(a, b, c) S(3, a, b, c, 0)
#define S4(a, b, c, d) S(4, a, b, c, d)
#define F IR_F32

static gcase C(int op, int nin, ir_shape a, ir_shape b, ir_shape c) {
  gcase g = {.op = op, .nin = nin, .lo = -1, .hi = 1};
  ir_shape s[3] = {a, b, c};
  for (int j = 0; j < nin && j < 3; j++) g.dt[j] = F, g.sh[j] = s[j];
  return g;
}

/* Up to 8 cases for op; 0 when it has none. */
static int cases_for(int op, gcase *cs) {
  int n = 0;
  if (ir_ops[op].cat == IR_CAT_UNARY) {
    cs[n++] = C(op, 1, S2(3, 4), S0, S0);
    if (op == IR_LOG || op == IR_SQRT || op == IR_POW) cs[0].lo = 0.5, cs[0].hi = 2;
    if (op == IR_LEAKY_RELU) cs[0].attr.f = 0.1;
    if (op == IR_POW) {
      cs[0].attr.f = 2.5;
      cs[n] = C(op, 1, S1(5), S0, S0), cs[n++].attr.f = 3;
    }
    if (op == IR_GELU) cs[n] = C(op, 1, S1(7), S0, S0), cs[n].lo = -3, cs[n].hi = 3, cs[n++].attr.approx = 1;
    if (op == IR_CAST) cs[0].attr.i = IR_F32;
    if (op == IR_CLAMP) { /* both bounds, then one: finite differences away from the kinks */
      cs[0].attr.f = -0.5, cs[0].attr.f2 = 0.6;
      cs[n] = C(op, 1, S1(9), S0, S0), cs[n].attr.f = -INFINITY, cs[n++].attr.f2 = 0.25;
    }
    return n;
  }
  switch (op) {
  case IR_ADD: case IR_SUB: case IR_MUL: case IR_DIV:
    cs[n++] = C(op, 2, S2(3, 4), S2(3, 4), S0);
    cs[n++] = C(op, 2, S3(2, 3, 1), S2(1, 4), S0);
    cs[n++] = C(op, 2, S1(4), S0, S0);
    if (op == IR_DIV) for (int i = 0; i < n; i++) cs[i].lo = 0.5, cs[i].hi = 2;
    return n;
  case IR_MATMUL:
    cs[n++] = C(op, 2, S2(3, 4), S2(4, 5), S0);
    cs[n++] = C(op, 2, S3(2, 3, 4), S2(4, 2), S0);
    cs[n++] = C(op, 2, S1(4), S3(2, 4, 3), S0);
    cs[n++] = C(op, 2, S4(2, 1, 2, 3), S1(3), S0);
    /* transpose flags (attr.i: 1 = A stored transposed, 2 = B), as
     * simplify makes them: autodiff of a graph optimised before it */
    cs[n] = C(op, 2, S2(4, 3), S2(4, 5), S0), cs[n++].attr.i = 1;
    cs[n] = C(op, 2, S3(2, 3, 4), S2(2, 4), S0), cs[n++].attr.i = 2;
    cs[n] = C(op, 2, S4(2, 1, 4, 3), S3(2, 5, 4), S0), cs[n++].attr.i = 3;
    cs[n] = C(op, 2, S1(4), S3(2, 3, 4), S0), cs[n++].attr.i = 2;
    return n;
  case IR_CONV2D:
    cs[n] = C(op, 3, S4(2, 2, 5, 5), S4(3, 2, 3, 3), S1(3));
    cs[n].attr.stride = 1, cs[n].attr.pad = 1, cs[n++].attr.pad_hi = 1;
    cs[n] = C(op, 2, S4(1, 1, 6, 6), S4(2, 1, 2, 2), S0);
    cs[n++].attr.stride = 2;
    cs[n] = C(op, 3, S3(2, 4, 9), S3(2, 2, 3), S1(2)); /* 1-d, dilated, 2 groups */
    cs[n].attr.stride = 2, cs[n].attr.pad = 1, cs[n].attr.pad_hi = 2, cs[n].attr.n = 2, cs[n++].attr.k = 2;
    cs[n] = C(op, 2, S4(1, 3, 5, 5), S4(3, 1, 2, 2), S0); /* depthwise 2-d, dilated */
    cs[n].attr.stride = 1, cs[n].attr.pad = 1, cs[n].attr.pad_hi = 1, cs[n++].attr.n = 2;
    cs[n - 1].attr.k = 3;
    return n;
  case IR_SOFTMAX: case IR_LOG_SOFTMAX:
    cs[n] = C(op, 1, S2(3, 5), S0, S0), cs[n++].attr.axis = 1;
    cs[n] = C(op, 1, S3(2, 4, 3), S0, S0), cs[n++].attr.axis = 1;
    return n;
  case IR_SUM: case IR_MEAN: case IR_MAX: case IR_MIN:
    cs[n] = C(op, 1, S2(3, 5), S0, S0), cs[n++].attr.axis = -1;
    cs[n] = C(op, 1, S3(2, 4, 3), S0, S0), cs[n++].attr.axis = 1;
    cs[n] = C(op, 1, S3(2, 4, 3), S0, S0), cs[n].attr.axis = 2, cs[n++].attr.keepdims = 1;
    return n;
  case IR_LAYERNORM:
    cs[n] = C(op, 3, S3(2, 3, 5), S1(5), S1(5)), cs[n++].attr.f = 1e-5;
    return n;
  case IR_BATCHNORM_TRAIN:
    cs[n] = C(op, 3, S3(4, 3, 5), S1(3), S1(3)), cs[n++].attr.f = 1e-5;
    cs[n] = C(op, 3, S2(6, 4), S1(4), S1(4)), cs[n++].attr.f = 1e-3;
    return n;
  case IR_GROUPNORM:
    cs[n] = C(op, 3, S3(2, 6, 5), S1(6), S1(6)), cs[n].attr.k = 3, cs[n++].attr.f = 1e-5;
    cs[n] = C(op, 3, S4(2, 4, 2, 3), S1(4), S1(4)), cs[n].attr.k = 1, cs[n++].attr.f = 1e-3;
    return n;
  case IR_RMSNORM:
    cs[n] = C(op, 2, S3(2, 3, 7), S1(7), S0), cs[n++].attr.f = 1e-6;
    cs[n] = C(op, 2, S2(4, 5), S1(5), S0), cs[n++].attr.f = 0.1;
    return n;
  case IR_MAXPOOL2D: case IR_AVGPOOL2D:
    cs[n] = C(op, 1, S4(2, 2, 4, 4), S0, S0), cs[n].attr.k = 2, cs[n++].attr.stride = 2;
    cs[n] = C(op, 1, S4(1, 1, 5, 5), S0, S0), cs[n].attr.k = 3, cs[n++].attr.stride = 1;
    cs[n] = C(op, 1, S3(2, 3, 9), S0, S0), cs[n].attr.k = 3, cs[n++].attr.stride = 2; /* 1-d */
    return n;
  case IR_RESHAPE:
    cs[n] = C(op, 1, S3(2, 3, 4), S0, S0), cs[n].attr.nlist = 2, cs[n].attr.list[0] = 6, cs[n++].attr.list[1] = 4;
    return n;
  case IR_TRANSPOSE:
    cs[n] = C(op, 1, S3(2, 3, 4), S0, S0), cs[n].attr.nlist = 3;
    cs[n].attr.list[0] = 2, cs[n].attr.list[1] = 0, cs[n++].attr.list[2] = 1;
    return n;
  case IR_CONCAT:
    cs[n] = C(op, 3, S2(2, 3), S2(2, 1), S2(2, 2)), cs[n++].attr.axis = 1;
    return n;
  case IR_WHERE: /* a broadcast to the result, b summed back from it */
    cs[n] = C(op, 3, S2(3, 4), S2(3, 4), S1(4)), cs[n].dt[0] = IR_BOOL, cs[n++].lim[0] = 2;
    cs[n] = C(op, 3, S2(3, 1), S1(5), S2(3, 5)), cs[n].dt[0] = IR_BOOL, cs[n++].lim[0] = 2;
    return n;
  case IR_SLICE:
    cs[n] = C(op, 1, S2(3, 6), S0, S0), cs[n].attr.axis = 1, cs[n].attr.start = 1, cs[n++].attr.end = 4;
    return n;
  case IR_EMBEDDING:
    cs[n] = C(op, 2, S2(2, 3), S2(5, 4), S0), cs[n].dt[0] = IR_I32, cs[n++].lim[0] = 5;
    return n;
  case IR_CUMSUM:
    cs[n] = C(op, 1, S2(3, 6), S0, S0), cs[n++].attr.axis = 1;
    cs[n] = C(op, 1, S3(2, 4, 3), S0, S0), cs[n++].attr.axis = 0;
    cs[n] = C(op, 1, S3(2, 4, 3), S0, S0), cs[n].attr.axis = 1, cs[n++].attr.i = 1;
    return n;
  case IR_GATHER: /* repeated indices: the gradient adds up */
    cs[n] = C(op, 2, S2(3, 4), S2(3, 6), S0), cs[n].dt[1] = IR_I32, cs[n].lim[1] = 4, cs[n++].attr.axis = 1;
    cs[n] = C(op, 2, S3(3, 4, 2), S3(5, 2, 2), S0), cs[n].dt[1] = IR_I64, cs[n++].lim[1] = 3;
    return n;
  case IR_ATTENTION:
    for (int causal = 0; causal < 2; causal++) {
      cs[n] = C(op, 5, S3(2, 3, 4), S2(4, 12), S1(12));
      cs[n].dt[3] = cs[n].dt[4] = F, cs[n].sh[3] = S2(4, 4), cs[n].sh[4] = S1(4);
      cs[n].attr.heads = 2, cs[n++].attr.causal = causal;
    }
    return n;
  case IR_MHA: /* cross-attention over Tk = 4 keys; rope, grouped heads, each mask kind */
    for (int m = 0; m < 4; m++) {
      int d = 8, H = 2, K = m == 2 ? 1 : 2, dk = K * d / H;
      cs[n] = C(op, 3, S3(2, 3, d), S2(d, d), S1(d));
      ir_shape more[6] = {S3(2, 4, 5), S2(5, 2 * dk), S1(2 * dk), S2(d, d), S1(d), S1(2)};
      for (int j = 3; j < 8; j++) cs[n].dt[j] = F, cs[n].sh[j] = more[j - 3];
      cs[n].nin = m ? 9 : 8;
      if (m) cs[n].dt[8] = m == 1 ? IR_I32 : IR_BOOL, cs[n].lim[8] = m == 1 ? 5 : 2;
      if (m) cs[n].sh[8] = m == 1 ? S1(2) : m == 2 ? S2(2, 4) : S3(2, 3, 4);
      cs[n].attr.heads = H, cs[n].attr.k = K, cs[n].attr.causal = m == 3, cs[n++].attr.i = m >= 2;
    }
    return n;
  case IR_RNN: case IR_LSTM: case IR_GRU: {
    int G = op == IR_LSTM ? 4 : op == IR_GRU ? 3 : 1, h = 3;
    cs[n] = C(op, op == IR_GRU ? 5 : 4, S3(2, 3, 2), S2(2, G * h), S2(h, G * h));
    cs[n].dt[3] = cs[n].dt[4] = F, cs[n].sh[3] = cs[n].sh[4] = S1(G * h);
    cs[n++].attr.n = h;
    return n;
  }
  case IR_CROSS_ENTROPY:
    cs[n] = C(op, 2, S2(4, 5), S1(4), S0), cs[n].dt[1] = IR_I32, cs[n++].lim[1] = 5;
    cs[n] = C(op, 2, S3(2, 3, 4), S2(2, 3), S0), cs[n].dt[1] = IR_I32, cs[n].lim[1] = 4, cs[n++].attr.f = 0.1;
    return n;
  case IR_MSE: case IR_BCE:
    cs[n++] = C(op, 2, S2(3, 4), S2(3, 4), S0);
    return n;
  case IR_NLL:
    cs[n] = C(op, 2, S2(4, 5), S1(4), S0), cs[n].dt[1] = IR_I32, cs[n++].lim[1] = 5;
    cs[n] = C(op, 2, S3(2, 3, 4), S2(2, 3), S0), cs[n].dt[1] = IR_I32, cs[n++].lim[1] = 4;
    return n;
  case IR_KL_DIV: /* target > 0: log t */
    cs[n++] = C(op, 2, S2(3, 4), S2(3, 4), S0);
    cs[n++] = C(op, 2, S3(2, 3, 2), S3(2, 3, 2), S0);
    for (int i = 0; i < n; i++) cs[i].lo = 0.1, cs[i].hi = 1;
    return n;
  case IR_L1:
    cs[n++] = C(op, 2, S2(3, 4), S2(3, 4), S0);
    cs[n++] = C(op, 2, S1(7), S1(7), S0);
    return n;
  case IR_HUBER: /* delta 0.5: both the quadratic and the linear part on [-1, 1] inputs */
    cs[n] = C(op, 2, S2(3, 4), S2(3, 4), S0), cs[n++].attr.f = 0.5;
    cs[n] = C(op, 2, S1(7), S1(7), S0), cs[n++].attr.f = 1.0;
    cs[n] = C(op, 2, S1(5), S1(5), S0), cs[n++].attr.f = 3.0;
    return n;
  default: return 0;
  }
}

/* Build: float operands are params, integer ones inputs; loss = sum(y * R). */
static int build_case(tgraph *t, const gcase *c) {
  ir_graph *g = &t->g;
  char msg[256];
  ir_loc loc = {0};
  int in[MAXIN];
  t->lim = ar_alloc(&t->A, sizeof(int64_t) * MAXIN);
  for (int j = 0; j < c->nin; j++) {
    char *name = ar_printf(&t->A, "p%d", j);
    if (ir_dtype_is_float(c->dt[j])) in[j] = ir_add_param(g, name, c->dt[j], &c->sh[j], IR_INIT_ZEROS, 0, 1, 1, loc);
    else {
      t->lim[g->ninputs] = c->lim[j];
      in[j] = ir_add_input(g, name, c->dt[j], &c->sh[j], 0, loc);
    }
  }
  int y = ir_add(g, c->op, in, c->nin, &c->attr, loc, msg, sizeof msg);
  if (y < 0) {
    fprintf(stderr, "%s: %s\n", ir_ops[c->op].name, msg);
    return -1;
  }
  ir_shape sy = g->nodes[y].shape;
  int64_t cnt = ir_numel(&sy);
  int r = ir_add_const(g, IR_F32, 0, loc);
  double *rv = ar_alloc(&t->A, sizeof(double) * (size_t)cnt);
  for (int64_t e = 0; e < cnt; e++) rv[e] = (double)(float)(0.5 + urand());
  g->nodes[r].shape = sy, g->nodes[r].data = rv;
  int m = ir_add(g, IR_MUL, (int[]){y, r}, 2, NULL, loc, msg, sizeof msg);
  ir_attr all = {0};
  all.axis = -1;
  g->loss = ir_add(g, IR_SUM, &m, 1, &all, loc, msg, sizeof msg);
  tg_fill(t, c->lo, c->hi);
  return g->loss < 0 ? -1 : 0;
}

static void test_ops(void) {
  gcase cs[8];
  printf("%-14s %14s %14s\n", "op", "fd rel err", "llvm rel err");
  for (int op = 0; op < IR_NOPS; op++) {
    if (!ad_differentiable(op)) continue;
    memset(cs, 0, sizeof cs);
    int n = cases_for(op, cs);
    CHECK_MSG(n > 0, "differentiable op %s has no gradient case", ir_ops[op].name);
    double worst = 0, cworst = 0;
    for (int i = 0; i < n; i++) {
      tgraph t;
      tg_init(&t, ir_ops[op].name);
      double ce = -1, e = build_case(&t, &cs[i]) ? INFINITY : check_graph(&t, ir_ops[op].name, &ce);
      worst = fmax(worst, e);
      cworst = ce < 0 || cworst < 0 ? -1 : fmax(cworst, ce);
      tg_free(&t);
    }
    printf("%-14s %14.3g %14.3g\n", ir_ops[op].name, worst, cworst);
    CHECK_MSG(worst <= 1e-6, "%s: gradient error %g vs finite differences", ir_ops[op].name, worst);
    CHECK_MSG(cworst >= 0 && cworst <= 1e-4, "%s: llvm gradient error %g", ir_ops[op].name, cworst);
  }
}

/* ---- example models ---- */

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  size_t got = fread(s, 1, (size_t)n, f);
  s[got] = '\0';
  fclose(f);
  return s;
}

/* s with the first `from` replaced by `to` (malloc'd). */
static char *replace(char *s, const char *from, const char *to) {
  char *at = from ? strstr(s, from) : NULL;
  if (!at) return s;
  size_t a = (size_t)(at - s), fl = strlen(from), tl = strlen(to), n = strlen(s);
  char *r = malloc(n - fl + tl + 1);
  memcpy(r, s, a);
  memcpy(r + a, to, tl);
  memcpy(r + a + tl, at + fl, n - a - fl + 1);
  free(s);
  return r;
}

/* Integer input ranges from their consumers: embedding ids and labels. */
static void input_limits(tgraph *t) {
  ir_graph *g = &t->g;
  t->lim = ar_alloc(&t->A, sizeof(int64_t) * (size_t)(g->ninputs + 1));
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    int k = n->op == IR_EMBEDDING ? 0 : (n->op == IR_CROSS_ENTROPY || n->op == IR_NLL) ? 1 : -1;
    if (k < 0 || g->nodes[n->in[k]].op != IR_INPUT) continue;
    const ir_shape *s = &g->nodes[n->in[k ? 0 : 1]].shape;
    t->lim[g->nodes[n->in[k]].attr.i] = k ? s->d[s->rank - 1] : s->d[0];
  }
}

static void test_model(const char *path, const char *from, const char *to) {
  char *src = slurp(path), *err = NULL;
  CHECK_MSG(src != NULL, "cannot read %s", path);
  if (!src) return;
  src = replace(src, from, to);
  fe_model *m = fe_parse(path, src, strlen(src), &err);
  tgraph t;
  tg_init(&t, path);
  int64_t dims[8] = {2, 2, 2, 2, 2, 2, 2, 2};
  if (!m || fe_lower(m, dims, &t.g, &err)) {
    CHECK_MSG(0, "%s: %s", path, err ? err : "?");
  } else {
    input_limits(&t);
    tg_fill(&t, -1, 1);
    /* initial weights as the trainer makes them, rounded to float */
    for (int p = 0; p < t.g.nparams; p++) {
      int64_t cnt = ir_numel(&t.g.params[p].shape);
      float *w = malloc(4 * (size_t)cnt);
      ir_param_init_values(&t.g.params[p], 1, w);
      for (int64_t e = 0; e < cnt; e++) t.vals[t.g.params[p].node][e] = w[e] + 0.01 * (urand() - 0.5);
      free(w);
    }
    double ce = -1, e = check_graph(&t, path, &ce);
    printf("%-22s fd rel err %.3g, llvm rel err %.3g (%d params, %d nodes)\n", path, e, ce, t.g.nparams, t.g.nnodes);
    CHECK_MSG(e <= 1e-6, "%s: gradient error %g vs finite differences", path, e);
    CHECK_MSG(ce >= 0 && ce <= 1e-4, "%s: llvm gradient error %g", path, ce);
  }
  free(err);
  fe_free(m);
  tg_free(&t);
  free(src);
}

static void test_models(void) {
  test_model("examples/mlp.nn", "HIDDEN = 256", "HIDDEN = 16");
  test_model("examples/cnn.nn", NULL, NULL);
  test_model("examples/gpt.nn", "T = 64, D = 128, HEADS = 4, LAYERS = 4", "T = 6, D = 8, HEADS = 2, LAYERS = 2");
  test_model("examples/lstm.nn", "T = 32, E = 64, H = 128", "T = 4, E = 6, H = 5");
}

/* ---- errors and edge cases ---- */

static void test_errors(void) {
  char msg[512];
  ir_loc loc = {0};
  tgraph t;
  /* a parameter reaching the loss only through a cast to integers */
  tg_init(&t, "cut");
  ir_graph *g = &t.g;
  ir_shape s2 = S1(2), sw = S2(4, 3);
  int p = ir_add_param(g, "idx", F, &s2, IR_INIT_ZEROS, 0, 1, 1, loc);
  int w = ir_add_param(g, "emb", F, &sw, IR_INIT_ZEROS, 0, 1, 1, loc);
  ir_attr ca = {0};
  ca.i = IR_I32;
  int c = ir_add(g, IR_CAST, &p, 1, &ca, loc, msg, sizeof msg);
  int e = ir_add(g, IR_EMBEDDING, (int[]){c, w}, 2, NULL, loc, msg, sizeof msg);
  ir_attr all = {0};
  all.axis = -1;
  g->loss = ir_add(g, IR_SUM, &e, 1, &all, loc, msg, sizeof msg);
  CHECK(ad_backward(g, NULL, 0, 1, msg, sizeof msg) == -1);
  CHECK_MSG(strstr(msg, "'idx'") && strstr(msg, "cast"), "message: %s", msg);
  /* only the embedding weight: fine */
  int only = 1;
  CHECK_MSG(ad_backward(g, &only, 1, 0, msg, sizeof msg) == 0, "%s", msg);
  CHECK(g->grads && g->grads[0] == -1 && g->grads[1] >= 0);
  tg_free(&t);

  /* no loss; an unused parameter gets zeros */
  tg_init(&t, "noloss");
  g = &t.g;
  p = ir_add_param(g, "a", F, &s2, IR_INIT_ZEROS, 0, 1, 1, loc);
  int q = ir_add_param(g, "unused", F, &sw, IR_INIT_ZEROS, 0, 1, 1, loc);
  CHECK(ad_backward(g, NULL, 0, 1, msg, sizeof msg) == -1 && strstr(msg, "no loss"));
  int sq = ir_add(g, IR_MUL, (int[]){p, p}, 2, NULL, loc, msg, sizeof msg);
  g->loss = ir_add(g, IR_SUM, &sq, 1, &all, loc, msg, sizeof msg);
  CHECK_MSG(ad_backward(g, NULL, 0, 1, msg, sizeof msg) == 0, "%s", msg);
  CHECK(ad_backward(g, NULL, 0, 1, msg, sizeof msg) == -1); /* only once */
  tg_fill(&t, -1, 1);
  t.vals = realloc(t.vals, sizeof *t.vals * (size_t)g->nnodes);
  for (int i = q + 1; i < g->nnodes; i++) t.vals[i] = NULL;
  CHECK_MSG(ir_interp(g, IR_INTERP_F64, t.vals, msg, sizeof msg) == 0, "%s", msg);
  const double *ga = t.vals[g->grads[0]], *gu = t.vals[g->grads[1]];
  CHECK_NEAR(ga[1], 2 * t.vals[p][1], 1e-12);
  CHECK(gu[0] == 0 && gu[11] == 0);
  tg_free(&t);
}

int main(void) {
  test_errors();
  test_ops();
  test_models();
  return TEST_REPORT();
}

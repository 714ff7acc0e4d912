/* test_llvm.c -- the CPU backend against the reference interpreter (f32
 * mode): every forward op in ops.def over several shapes (sizes 1, 7, 33 and
 * broadcasting), max relative error <= 1e-5 (abs floor 1e-6), bit-identical
 * reruns, and 100 compile+run cycles (leaks are ASan/LSan's job). */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/llvm/cg.h"
#include "ir.h"
#include "test.h"

#define MAXIN 10

typedef struct {
  int nin;
  ir_dtype dt[MAXIN];
  ir_shape sh[MAXIN];
  ir_attr attr;
  int domain; /* 0: [-1,1]; 1: (0.1, 2]; 2: ints in [0, lim); 3: {0,1} floats */
  int64_t lim;
} tcase;

static ir_shape S(int rank, ...) {
  ir_shape s = {0};
  va_list ap;
  va_start(ap, rank);
  s.rank = rank;
  for (int i = 0; i < rank; i++) s.d[i] = va_arg(ap, int);
  va_end(ap);
  return s;
}

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

static double sample(const tcase *c, int j) {
  /* an integer divisor (domain 2, second operand) is never 0: which draw
   * lands where depends on every case before it */
  if (c->dt[j] != IR_F32 && c->domain == 2 && j > 0 && c->lim > 1) return 1.0 + (double)(int64_t)(urand() * (double)(c->lim - 1));
  if (c->dt[j] != IR_F32) return (double)(int64_t)(urand() * (double)(c->lim > 0 ? c->lim : 5));
  if (c->domain == 1) return 0.1 + 1.9 * urand();
  if (c->domain == 3) return urand() < 0.5 ? 0.0 : 1.0;
  if (c->domain == 2 && j > 0) return (double)(int64_t)(urand() * 3) + 1;
  return 2.0 * urand() - 1.0;
}

static void put(void *buf, ir_dtype t, int64_t i, double v) {
  if (t == IR_F32) ((float *)buf)[i] = (float)v;
  else if (t == IR_I32) ((int32_t *)buf)[i] = (int32_t)v;
  else if (t == IR_I64) ((int64_t *)buf)[i] = (int64_t)v;
  else ((int8_t *)buf)[i] = (int8_t)v;
}

static double get(const void *buf, ir_dtype t, int64_t i) {
  if (t == IR_F32) return ((const float *)buf)[i];
  if (t == IR_I32) return ((const int32_t *)buf)[i];
  if (t == IR_I64) return (double)((const int64_t *)buf)[i];
  if (t == IR_U8 || t == IR_BOOL) return ((const uint8_t *)buf)[i];
  return ((const int8_t *)buf)[i];
}

enum { OP_FUSED = IR_NOPS }; /* pseudo-op: a product with an elementwise chain the backend fuses */

static const char *op_name(int op) { return op == OP_FUSED ? "fused chain" : ir_ops[op].name; }

/* x @ w -> + bias -> gelu -> res - (.) -> tanh: inputs x, w, bias, res. The
 * product also stays an output when the case's attr.k is set (not fusable). */
static int add_fused_chain(ir_graph *g, const int *in, const tcase *c, ir_loc loc, char *msg, size_t msgn) {
  ir_attr ma = {.i = c->attr.i}; /* the product's transpose flags */
  int mm = ir_add(g, IR_MATMUL, in, 2, &ma, loc, msg, msgn);
  int ab[2] = {mm, in[2]};
  int a = mm >= 0 ? ir_add(g, IR_ADD, ab, 2, NULL, loc, msg, msgn) : -1;
  ir_attr ga = {0};
  int gl = a >= 0 ? ir_add(g, IR_GELU, &a, 1, &ga, loc, msg, msgn) : -1;
  int rs[2] = {in[3], gl};
  int r = gl >= 0 ? ir_add(g, IR_SUB, rs, 2, NULL, loc, msg, msgn) : -1;
  if (c->attr.k && mm >= 0) ir_add_output(g, ar_printf(g->A, "mm%d", in[0]), mm);
  return r >= 0 ? ir_add(g, IR_TANH, &r, 1, NULL, loc, msg, msgn) : -1;
}

/* Run all cases of one op in one graph; returns the max error, -1 on failure. */
static double run_op(int op, const tcase *cs, int ncase) {
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "t");
  char msg[512];
  ir_loc loc = {0};
  int ok = 1;
  for (int c = 0; c < ncase && ok; c++) {
    int in[MAXIN];
    for (int j = 0; j < cs[c].nin; j++) in[j] = ir_add_input(&g, ar_printf(&A, "x%d_%d", c, j), cs[c].dt[j], &cs[c].sh[j], 0, loc);
    int nd;
    if (op == IR_CONST) { /* const + x */
      int k = ir_add_const(&g, IR_F32, 0.375, loc), ab[2] = {in[0], k};
      nd = ir_add(&g, IR_ADD, ab, 2, NULL, loc, msg, sizeof msg);
    } else if (op == OP_FUSED) nd = add_fused_chain(&g, in, &cs[c], loc, msg, sizeof msg);
    else nd = ir_add(&g, op, in, cs[c].nin, &cs[c].attr, loc, msg, sizeof msg);
    if (nd < 0) {
      fprintf(stderr, "%s case %d: ir_add: %s\n", op_name(op), c, msg);
      ok = 0;
      break;
    }
    if (op == IR_RESHAPE) { /* also an aliased reshape feeding another op */
      ir_attr a = cs[c].attr;
      int r = ir_add(&g, IR_RESHAPE, in, 1, &a, loc, msg, sizeof msg);
      int rr = r >= 0 ? ir_add(&g, IR_NEG, &r, 1, NULL, loc, msg, sizeof msg) : -1;
      if (rr >= 0) ir_add_output(&g, ar_printf(&A, "r%d", c), rr);
    }
    ir_add_output(&g, ar_printf(&A, "y%d", c), nd);
  }
  double worst = ok ? 0.0 : -1.0;
  if (!ok) goto done;
  /* inputs */
  double **vals = calloc((size_t)g.nnodes, sizeof *vals);
  void **ins = calloc((size_t)g.ninputs, sizeof *ins), **outs = calloc((size_t)g.noutputs, sizeof *outs);
  void **outs2 = calloc((size_t)g.noutputs, sizeof *outs2);
  for (int i = 0, c = 0, j = 0; i < g.ninputs; i++) {
    while (j >= cs[c].nin) c++, j = 0;
    const ir_input *x = &g.inputs[i];
    int64_t n = ir_numel(&x->shape);
    vals[x->node] = malloc(sizeof(double) * (size_t)(n ? n : 1));
    ins[i] = malloc(8 * (size_t)(n ? n : 1));
    for (int64_t e = 0; e < n; e++) {
      double v = sample(&cs[c], j);
      put(ins[i], x->dtype, e, v);
      vals[x->node][e] = get(ins[i], x->dtype, e);
    }
    j++;
  }
  for (int o = 0; o < g.noutputs; o++) {
    int64_t n = ir_numel(&g.nodes[g.outputs[o].node].shape);
    outs[o] = calloc((size_t)(n ? n : 1), 8);
    outs2[o] = calloc((size_t)(n ? n : 1), 8);
  }
  if (ir_interp(&g, IR_INTERP_F32, vals, msg, sizeof msg)) {
    fprintf(stderr, "%s: interp: %s\n", op_name(op), msg);
    worst = -1;
  } else {
    cg_program *p = cg_compile(&g, NULL, msg, sizeof msg);
    if (!p) {
      fprintf(stderr, "%s: compile: %s\n", op_name(op), msg);
      worst = -1;
    } else {
      if (cg_run(p, ins, NULL, outs, NULL, msg, sizeof msg) || cg_run(p, ins, NULL, outs2, NULL, msg, sizeof msg)) {
        fprintf(stderr, "%s: run: %s\n", op_name(op), msg);
        worst = -1;
      }
      for (int o = 0; o < g.noutputs && worst >= 0; o++) {
        const ir_node *nd = &g.nodes[g.outputs[o].node];
        int64_t n = ir_numel(&nd->shape);
        size_t bytes = (size_t)n * ir_dtype_size(nd->dtype);
        CHECK_MSG(memcmp(outs[o], outs2[o], bytes) == 0, "%s output %d differs between runs", op_name(op), o);
        for (int64_t e = 0; e < n; e++) {
          double a = get(outs[o], nd->dtype, e), b = vals[g.outputs[o].node][e];
          double err = (isnan(a) && isnan(b)) || a == b ? 0.0 : fabs(a - b) / fmax(fabs(b), 0.1);
          if (!(err <= worst)) {
            worst = err;
            if (!(err <= 1e-5))
              fprintf(stderr, "%s output %s[%lld]: got %.9g want %.9g\n", op_name(op), g.outputs[o].name,
                      (long long)e, a, b);
          }
        }
      }
      cg_free(p);
    }
    ir_interp_release(&g, vals);
  }
  for (int i = 0; i < g.ninputs; i++) free(vals[g.inputs[i].node]), free(ins[i]);
  for (int o = 0; o < g.noutputs; o++) free(outs[o]), free(outs2[o]);
  free(vals), free(ins), free(outs), free(outs2);
done:
  ar_free(&A);
  return worst;
}

/* ---- the case table ---- */

#define F IR_F32
#define I IR_I32
static tcase C1(ir_dtype t, ir_shape s) { tcase c = {0}; c.nin = 1; c.dt[0] = t; c.sh[0] = s; return c; }
static tcase C2(ir_dtype t, ir_shape a, ir_dtype u, ir_shape b) {
  tcase c = C1(t, a);
  c.nin = 2, c.dt[1] = u, c.sh[1] = b;
  return c;
}

static int cases_for(int op, tcase *cs) {
  int n = 0;
  ir_cat cat = ir_ops[op].cat;
  if (op == IR_INPUT || op == IR_PARAM) return 0; /* exercised by every case */
  if (op == IR_CONST) { cs[n++] = C1(F, S(1, 7)); return n; }
  if (op == IR_ARANGE) { for (int l = 1; l <= 33; l += 16) { cs[n] = (tcase){0}; cs[n++].attr.n = l; } return n; }
  if (cat == IR_CAT_UNARY) {
    ir_shape sh[4] = {S(1, 1), S(1, 7), S(1, 33), S(3, 2, 3, 33)};
    for (int i = 0; i < 4; i++) {
      cs[n] = C1(F, sh[i]);
      if (op == IR_LOG || op == IR_SQRT) cs[n].domain = 1;
      if (op == IR_LEAKY_RELU) cs[n].attr.f = 0.1;
      if (op == IR_DROPOUT) cs[n].attr.f = 0.5;
      if (op == IR_POW) cs[n].attr.f = i == 0 ? 2 : i == 1 ? 3 : 0.5, cs[n].domain = i >= 2;
      if (op == IR_GELU) cs[n].attr.approx = i & 1;
      if (op == IR_CLAMP) cs[n].attr.f = i == 2 ? -INFINITY : -0.5, cs[n].attr.f2 = i == 1 ? INFINITY : 0.5;
      if (op == IR_CAST) cs[n].attr.i = i == 3 ? IR_F32 : IR_I32, cs[n].dt[0] = i == 3 ? IR_I64 : F;
      n++;
    }
    if (op == IR_ABS || op == IR_NEG) cs[n++] = C1(I, S(1, 7));
    if (op == IR_CAST) { cs[n] = C1(F, S(1, 7)); cs[n++].attr.i = IR_BOOL; }
    if (op == IR_GELU) { cs[n] = C1(F, S(1, 33)); cs[n].attr.approx = 0; cs[n++].domain = 0; }
    return n;
  }
  switch (op) {
  case IR_ADD: case IR_SUB: case IR_MUL: case IR_DIV:
    cs[n++] = C2(F, S(1, 7), F, S(1, 7));
    cs[n++] = C2(F, S(2, 3, 1), F, S(2, 1, 33));
    cs[n++] = C2(F, S(3, 2, 3, 4), F, S(1, 4));
    cs[n++] = C2(F, S(1, 1), F, S(1, 33));
    cs[n++] = C2(F, S(1, 33), F, S(0));
    cs[n] = C2(I, S(2, 3, 7), I, S(1, 7)); cs[n].domain = 2; cs[n++].lim = 50;
    if (op == IR_DIV) for (int i = 0; i < 5; i++) cs[i].domain = 1;
    return n;
  case IR_ARGMAX: case IR_ARGMIN:
    cs[n] = C1(F, S(1, 33)); cs[n++].attr.axis = -1;
    cs[n] = C1(F, S(2, 3, 33)); cs[n++].attr.axis = 1;
    cs[n] = C1(F, S(3, 2, 7, 3)); cs[n].attr.axis = 1; cs[n++].attr.keepdims = 1;
    cs[n] = C1(F, S(2, 7, 5)); cs[n].attr.axis = 0; cs[n++].domain = 3; /* {0, 1}: ties */
    cs[n] = C1(I, S(2, 7, 3)); cs[n].attr.axis = 0; cs[n++].lim = 3;
    return n;
  case IR_WHERE:
    for (int i = 0; i < 3; i++) {
      static const int r[3][3][3] = {{{2, 3, 33}, {2, 3, 33}, {2, 3, 33}}, {{2, 3, 1}, {2, 1, 33}, {1, 33, 0}},
                                     {{1, 7, 0}, {2, 2, 7}, {0, 0, 0}}};
      cs[n] = C2(IR_BOOL, S(r[i][0][0], r[i][0][1], r[i][0][2]), i == 2 ? I : F, S(r[i][1][0], r[i][1][1], r[i][1][2]));
      cs[n].nin = 3, cs[n].dt[2] = cs[n].dt[1], cs[n].sh[2] = S(r[i][2][0], r[i][2][1], r[i][2][2]);
      cs[n].lim = 2; /* cond in {0, 1}; the integer case's values too */
      n++;
    }
    return n;
  case IR_LESS: case IR_LESS_EQUAL: case IR_GREATER: case IR_GREATER_EQUAL: case IR_EQUAL: case IR_NOT_EQUAL:
    cs[n++] = C2(F, S(2, 3, 1), F, S(2, 1, 33));
    cs[n++] = C2(F, S(1, 7), F, S(0));
    cs[n] = C2(I, S(2, 3, 7), I, S(1, 7)); cs[n++].lim = 3; /* ints in [0, 3): many ties */
    cs[n] = C2(F, S(1, 7), F, S(1, 7)); cs[n++].domain = 3; /* {0, 1} floats: ties */
    return n;
  case IR_MATMUL:
    cs[n++] = C2(F, S(2, 7, 33), F, S(2, 33, 1));
    cs[n++] = C2(F, S(2, 1, 7), F, S(2, 7, 33));
    cs[n++] = C2(F, S(3, 2, 3, 7), F, S(2, 7, 5));
    cs[n++] = C2(F, S(3, 2, 3, 7), F, S(3, 2, 7, 5));
    cs[n++] = C2(F, S(1, 7), F, S(2, 7, 3));
    cs[n++] = C2(F, S(2, 3, 7), F, S(1, 7));
    cs[n++] = C2(F, S(4, 2, 1, 3, 4), F, S(3, 5, 4, 6));
    cs[n++] = C2(F, S(2, 3, 4), F, S(3, 2, 4, 6));
    return n;
  case IR_CONV2D:
    cs[n] = C2(F, S(4, 2, 3, 7, 7), F, S(4, 4, 3, 3, 3));
    cs[n].nin = 3, cs[n].dt[2] = F, cs[n].sh[2] = S(1, 4), cs[n].attr.stride = 1, cs[n].attr.pad = 1, cs[n++].attr.pad_hi = 1;
    cs[n] = C2(F, S(4, 1, 1, 8, 8), F, S(4, 2, 1, 3, 3));
    cs[n++].attr.stride = 2;
    cs[n] = C2(F, S(4, 1, 3, 5, 5), F, S(4, 4, 3, 1, 1));
    cs[n].nin = 3, cs[n].dt[2] = F, cs[n].sh[2] = S(1, 4), cs[n++].attr.stride = 1;
    /* 1-d [N, C, L] with dilation and groups; 2-d depthwise (the group loop), dilated */
    cs[n] = C2(F, S(3, 2, 6, 21), F, S(3, 4, 3, 3));
    cs[n].nin = 3, cs[n].dt[2] = F, cs[n].sh[2] = S(1, 4), cs[n].attr.stride = 2, cs[n].attr.pad = 1;
    cs[n].attr.pad_hi = 1, cs[n].attr.n = 2, cs[n++].attr.k = 2;
    cs[n] = C2(F, S(4, 2, 8, 9, 9), F, S(4, 8, 1, 3, 3));
    cs[n].attr.stride = 1, cs[n].attr.pad = 2, cs[n].attr.pad_hi = 2, cs[n].attr.n = 2, cs[n++].attr.k = 8;
    cs[n] = C2(F, S(4, 1, 4, 6, 7), F, S(4, 6, 2, 2, 3)); /* a rectangular kernel, 2 groups */
    cs[n].attr.stride = 1, cs[n].attr.pad = 1, cs[n].attr.pad_hi = 0, cs[n++].attr.k = 2;
    return n;
  case IR_SOFTMAX: case IR_LOG_SOFTMAX:
    cs[n] = C1(F, S(1, 7)); cs[n++].attr.axis = 0;
    cs[n] = C1(F, S(2, 3, 33)); cs[n++].attr.axis = 1;
    cs[n] = C1(F, S(2, 3, 33)); cs[n++].attr.axis = 0;
    cs[n] = C1(F, S(3, 2, 7, 3)); cs[n++].attr.axis = 1;
    cs[n] = C1(F, S(1, 1)); cs[n++].attr.axis = 0;
    return n;
  case IR_SUM: case IR_MEAN: case IR_MAX: case IR_MIN:
    cs[n] = C1(F, S(1, 33)); cs[n++].attr.axis = -1;
    cs[n] = C1(F, S(2, 3, 33)); cs[n++].attr.axis = 1;
    cs[n] = C1(F, S(3, 2, 7, 3)); cs[n].attr.axis = 1; cs[n++].attr.keepdims = 1;
    cs[n] = C1(F, S(1, 1)); cs[n++].attr.axis = 0;
    if (op != IR_MEAN) { cs[n] = C1(I, S(2, 7, 3)); cs[n].attr.axis = 0; cs[n++].lim = 100; }
    return n;
  case IR_LAYERNORM:
    for (int i = 0; i < 2; i++) {
      int d = i ? 33 : 7;
      cs[n] = C2(F, i ? S(2, 3, d) : S(2, 1, d), F, S(1, d));
      cs[n].nin = 3, cs[n].dt[2] = F, cs[n].sh[2] = S(1, d), cs[n++].attr.f = 1e-5;
    }
    return n;
  case IR_BATCHNORM: case IR_BATCHNORM_TRAIN: case IR_GROUPNORM: case IR_RMSNORM: {
    /* small, then big enough to split the groups over the pool (cg_norm.c) */
    ir_shape xs[4] = {S(3, 4, 6, 5), S(2, 16, 6), S(4, 2, 6, 3, 33), S(3, 64, 6, 300)};
    int nin = op == IR_BATCHNORM ? 5 : op == IR_RMSNORM ? 2 : 3;
    for (int i = 0; i < 4; i++) {
      int64_t c = op == IR_RMSNORM ? xs[i].d[xs[i].rank - 1] : 6;
      cs[n] = C1(F, xs[i]);
      cs[n].nin = nin, cs[n].domain = op == IR_BATCHNORM, cs[n].attr.f = i == 1 ? 1e-3 : 1e-5, cs[n].attr.k = 3;
      for (int j = 1; j < nin; j++) cs[n].dt[j] = F, cs[n].sh[j] = S(1, c);
      n++;
    }
    return n;
  }
  case IR_MAXPOOL2D: case IR_AVGPOOL2D:
    cs[n] = C1(F, S(4, 2, 3, 8, 8)); cs[n].attr.k = 2; cs[n++].attr.stride = 2;
    cs[n] = C1(F, S(4, 1, 1, 7, 7)); cs[n].attr.k = 3; cs[n++].attr.stride = 2;
    cs[n] = C1(F, S(3, 2, 3, 21)); cs[n].attr.k = 3; cs[n++].attr.stride = 2; /* 1-d */
    cs[n] = C1(F, S(3, 1, 2, 8)); cs[n].attr.k = 2; cs[n++].attr.stride = 2;
    return n;
  case IR_RESHAPE:
    cs[n] = C1(F, S(3, 2, 3, 7)); cs[n].attr.nlist = 2, cs[n].attr.list[0] = 6, cs[n++].attr.list[1] = 7;
    cs[n] = C1(F, S(1, 33)); cs[n].attr.nlist = 2, cs[n].attr.list[0] = 33, cs[n++].attr.list[1] = 1;
    return n;
  case IR_TRANSPOSE:
    cs[n] = C1(F, S(3, 2, 3, 7)); cs[n].attr.nlist = 3, cs[n].attr.list[0] = 2, cs[n].attr.list[1] = 0, cs[n++].attr.list[2] = 1;
    cs[n] = C1(F, S(2, 33, 7)); cs[n].attr.nlist = 2, cs[n].attr.list[0] = 1, cs[n++].attr.list[1] = 0;
    return n;
  case IR_CONCAT:
    cs[n] = C2(F, S(2, 2, 3), F, S(2, 2, 7)); cs[n++].attr.axis = 1;
    cs[n] = C2(F, S(2, 1, 4), F, S(2, 3, 4)); cs[n].nin = 3, cs[n].dt[2] = F, cs[n].sh[2] = S(2, 2, 4); cs[n++].attr.axis = 0;
    return n;
  case IR_SLICE:
    cs[n] = C1(F, S(2, 7, 33)); cs[n].attr.axis = 1, cs[n].attr.start = 3, cs[n++].attr.end = 20;
    cs[n] = C1(F, S(1, 7)); cs[n].attr.axis = 0, cs[n].attr.start = 0, cs[n++].attr.end = 7;
    return n;
  case IR_EMBEDDING:
    cs[n] = C2(I, S(2, 2, 7), F, S(2, 33, 5)); cs[n++].lim = 33;
    cs[n] = C2(IR_I64, S(1, 1), F, S(2, 7, 1)); cs[n++].lim = 7;
    return n;
  case IR_ONE_HOT:
    cs[n] = C1(I, S(2, 3, 7)); cs[n].lim = 10; cs[n++].attr.n = 10;
    cs[n] = C1(IR_I64, S(1, 1)); cs[n].lim = 1; cs[n++].attr.n = 1;
    return n;
  case IR_CUMSUM:
    cs[n] = C1(F, S(2, 3, 33)); cs[n++].attr.axis = 1;
    cs[n] = C1(F, S(3, 2, 7, 3)); cs[n].attr.axis = 2; cs[n++].attr.i = 1;
    cs[n] = C1(F, S(1, 1)); cs[n++].attr.axis = 0;
    return n;
  case IR_GATHER:
    cs[n] = C2(F, S(2, 7, 33), I, S(2, 7, 20)); cs[n].lim = 33; cs[n++].attr.axis = 1;
    cs[n] = C2(F, S(3, 4, 5, 3), IR_I64, S(3, 2, 9, 3)); cs[n].lim = 5; cs[n++].attr.axis = 1;
    cs[n] = C2(I, S(2, 3, 4), I, S(2, 2, 4)); cs[n].lim = 3; cs[n++].attr.axis = 0;
    return n;
  case IR_ATTENTION:
    for (int i = 0; i < 4; i++) { /* case 3: causal blocks of query rows, heads in parallel */
      int B = i == 2 ? 1 : 2, T = i == 2 ? 1 : i == 3 ? 130 : 7, d = i == 2 ? 4 : 8;
      cs[n] = C2(F, S(3, B, T, d), F, S(2, d, 3 * d));
      cs[n].nin = 5;
      cs[n].dt[2] = cs[n].dt[3] = cs[n].dt[4] = F;
      cs[n].sh[2] = S(1, 3 * d), cs[n].sh[3] = S(2, d, d), cs[n].sh[4] = S(1, d);
      cs[n].attr.heads = i == 2 ? 1 : 2;
      cs[n++].attr.causal = i == 1 || i == 3;
    }
    return n;
  case IR_MHA: /* mask kinds (lengths, bool keys, bool [B,Tq,Tk]), rope, grouped heads, Tq > 64 */
    for (int i = 0; i < 4; i++) {
      int B = 2, Tq = i == 3 ? 130 : 5, Tk = i == 3 ? 70 : 6, d = 8, H = 4, K = i == 1 ? 1 : i == 2 ? 2 : 4;
      int dk = K * d / H, dc = i == 0 ? d : 6;
      cs[n] = C2(F, S(3, B, Tq, d), F, S(2, d, d));
      cs[n].nin = i == 0 ? 8 : 9;
      ir_shape more[7] = {S(1, d), S(3, B, Tk, dc), S(2, dc, 2 * dk), S(1, 2 * dk), S(2, d, d), S(1, d),
                          i == 1 ? S(1, B) : i == 2 ? S(2, B, Tk) : S(3, B, Tq, Tk)};
      for (int j = 2; j < cs[n].nin; j++) cs[n].dt[j] = F, cs[n].sh[j] = more[j - 2];
      if (i) cs[n].dt[8] = i == 1 ? I : IR_BOOL;
      cs[n].lim = i == 1 ? Tk + 1 : 2; /* lengths 0..Tk (0: a row that sees nothing), bools 0/1 */
      cs[n].attr.heads = H, cs[n].attr.k = K, cs[n].attr.causal = i >= 2, cs[n++].attr.i = i >= 1;
    }
    return n;
  case IR_RNN: case IR_LSTM: case IR_GRU: {
    int G = op == IR_LSTM ? 4 : op == IR_GRU ? 3 : 1;
    for (int i = 0; i < 2; i++) {
      int B = i ? 1 : 2, T = i ? 1 : 7, in = i ? 4 : 3, h = i ? 1 : 5;
      cs[n] = C2(F, S(3, B, T, in), F, S(2, in, G * h));
      cs[n].nin = op == IR_GRU ? 5 : 4;
      cs[n].dt[2] = cs[n].dt[3] = cs[n].dt[4] = F;
      cs[n].sh[2] = S(2, h, G * h), cs[n].sh[3] = S(1, G * h), cs[n].sh[4] = S(1, G * h);
      cs[n].attr.n = h;
      n++;
    }
    return n;
  }
  case IR_CROSS_ENTROPY:
    cs[n] = C2(F, S(2, 7, 5), I, S(1, 7)); cs[n++].lim = 5;
    cs[n] = C2(F, S(3, 2, 3, 33), I, S(2, 2, 3)); cs[n].lim = 33; cs[n++].attr.f = 0.1;
    /* class weights in (0.1, 2] and an ignore_index (lathe_rt_cross_entropy): with smoothing, without weights */
    cs[n] = C2(F, S(2, 9, 5), I, S(1, 9)); cs[n].nin = 3, cs[n].dt[2] = F, cs[n].sh[2] = S(1, 5);
    cs[n].lim = 5, cs[n].domain = 1, cs[n].attr.f = 0.1, cs[n].attr.k = 1, cs[n++].attr.n = 2;
    cs[n] = C2(F, S(3, 2, 3, 33), I, S(2, 2, 3)); cs[n].lim = 4, cs[n].attr.k = 1, cs[n++].attr.n = 0;
    /* the default ignore_index (attr k = 2): an ignored label in the batch (lathe_rt_cross_entropy), and
     * PyTorch's -100, which these labels never are (the plain kernel) */
    cs[n] = C2(F, S(2, 40, 5), I, S(1, 40)); cs[n].lim = 5, cs[n].attr.k = 2, cs[n++].attr.n = 3;
    cs[n] = C2(F, S(2, 40, 5), I, S(1, 40)); cs[n].lim = 5, cs[n].attr.k = 2, cs[n++].attr.n = -100;
    return n;
  case IR_MSE: case IR_BCE:
    cs[n++] = C2(F, S(2, 7, 3), F, S(2, 7, 3));
    cs[n++] = C2(F, S(1, 33), F, S(1, 33));
    if (op == IR_BCE) cs[0].domain = cs[1].domain = 0;
    return n;
  case IR_NLL:
    cs[n] = C2(F, S(2, 7, 5), I, S(1, 7)); cs[n++].lim = 5;
    cs[n] = C2(F, S(3, 2, 3, 33), I, S(2, 2, 3)); cs[n++].lim = 33;
    return n;
  case IR_KL_DIV: /* targets in (0.1, 2] (log t); zero targets: the fixtures (interpreter) */
    cs[n] = C2(F, S(2, 7, 3), F, S(2, 7, 3)), cs[n++].domain = 1;
    cs[n] = C2(F, S(1, 33), F, S(1, 33)), cs[n++].domain = 1;
    return n;
  case IR_L1: case IR_HUBER: /* huber with delta 0.5, 1 (default) and 5 */
    cs[n] = C2(F, S(2, 7, 3), F, S(2, 7, 3)), cs[n++].attr.f = 0.5;
    cs[n] = C2(F, S(1, 33), F, S(1, 33)), cs[n++].attr.f = 1.0;
    cs[n] = C2(F, S(3, 2, 3, 4), F, S(3, 2, 3, 4)), cs[n++].attr.f = 5.0;
    return n;
  default: return 0;
  }
}

static void test_ops(void) {
  tcase cs[16];
  for (int op = 0; op < IR_NOPS; op++) {
    memset(cs, 0, sizeof cs);
    int n = cases_for(op, cs);
    if (op == IR_INPUT || op == IR_PARAM) continue;
    if (ir_ops[op].cat == IR_CAT_GRAD) continue; /* tests/test_llvm_grad.c */
    if (ir_ops[op].cat == IR_CAT_FUSED) continue; /* tests/test_fuse.c */
    if (op == IR_QMATMUL) continue; /* tests/test_quant.c: its weights are made by lathe_quantize */
    if (op == IR_QCONV2D) continue; /* tests/test_qconv.c: the same */
    if (op == IR_QUANTIZE || op == IR_DEQUANTIZE) continue; /* tests/test_quant_s8.c: between int8 products */
    CHECK_MSG(n > 0, "op %s has no test cases", ir_ops[op].name);
    if (!n) continue;
    if (op == IR_BCE) /* labels in {0, 1} */
      for (int c = 0; c < n; c++) cs[c].domain = 0;
    double e = run_op(op, cs, n);
    printf("%-14s max rel err %.3g\n", ir_ops[op].name, e);
    CHECK_MSG(e >= 0 && e <= 1e-5, "op %s: error %g", ir_ops[op].name, e);
  }
}

/* Products fused with their elementwise tails, on each path: the generated
 * small product, a cblas product with an epilogue pass, batched products,
 * a vector-matrix product, and a chain that must not fuse (the product is
 * also an output). */
static void test_fused(void) {
  tcase cs[6];
  memset(cs, 0, sizeof cs);
  static const int shp[5][4][4] = {
    {{3, 2, 7, 33}, {2, 33, 5}, {1, 5}, {3, 2, 7, 5}},
    {{3, 1, 1024, 8}, {2, 8, 160}, {2, 1, 160}, {3, 1, 1024, 160}}, /* cblas, rows in parallel */
    {{3, 2, 3, 7}, {3, 2, 7, 5}, {1, 5}, {3, 2, 3, 5}},
    {{1, 7}, {2, 7, 3}, {1, 3}, {1, 3}},
    {{2, 7, 33}, {2, 33, 20}, {1, 20}, {2, 7, 20}},
  };
  for (int c = 0; c < 5; c++) {
    cs[c].nin = 4;
    for (int j = 0; j < 4; j++) {
      cs[c].dt[j] = IR_F32;
      cs[c].sh[j].rank = shp[c][j][0];
      for (int d = 0; d < shp[c][j][0]; d++) cs[c].sh[j].d[d] = shp[c][j][1 + d];
    }
  }
  cs[4].attr.k = 1;
  double e = run_op(OP_FUSED, cs, 5);
  printf("%-14s max rel err %.3g\n", "fused chains", e);
  CHECK_MSG(e >= 0 && e <= 1e-5, "fused chains: error %g", e);
}

/* Products with transpose flags (attr.i: 1 = A is stored transposed, 2 =
 * B is), on each path: the generated small product (B packed when
 * transposed), cblas (sizes past CG_SMALL_GEMM), batched products, shared
 * weights as one tall GEMM (not possible with a transposed A: a loop over
 * the batch instead), broadcast batches and a vector times a transposed
 * matrix; then the same flags under a fused elementwise tail. */
static void test_flagged_matmul(void) {
  rng = 88172645463325252ull; /* its own draws: not shifted by every op case added before it */
  static const struct {
    int flags;
    int a[5], b[5]; /* rank, dims (as stored) */
  } t[] = {
    {1, {2, 33, 7}, {2, 33, 1}},           /* [7, 33] @ [33, 1] */
    {2, {2, 7, 33}, {2, 5, 33}},           /* [7, 33] @ [33, 5] */
    {3, {2, 33, 7}, {2, 1, 33}},
    {2, {2, 7, 33}, {2, 300, 33}},         /* wide: whole vector blocks of packed B */
    {1, {2, 1, 1}, {2, 1, 1}},
    {1, {3, 2, 7, 3}, {3, 2, 7, 5}},       /* batched */
    {2, {3, 2, 3, 7}, {2, 5, 7}},          /* shared weights: one tall GEMM */
    {1, {3, 2, 7, 3}, {2, 7, 5}},          /* shared weights, A transposed: per batch */
    {3, {4, 2, 1, 4, 3}, {3, 5, 6, 4}},    /* broadcast batch dims */
    {2, {1, 7}, {3, 2, 3, 7}},             /* vector @ batched transposed matrices */
    {3, {2, 33, 200}, {2, 180, 33}},       /* 1.19M multiply-adds: cblas */
    {1, {3, 2, 33, 130}, {2, 33, 257}},    /* cblas per batch */
    {2, {3, 2, 130, 33}, {2, 257, 33}},    /* cblas, one tall GEMM */
    {0, {2, 7, 7}, {2, 7, 7}},             /* equal shapes, every flag: four kernels, not one */
    {1, {2, 7, 7}, {2, 7, 7}},
    {2, {2, 7, 7}, {2, 7, 7}},
    {3, {2, 7, 7}, {2, 7, 7}},
    {0, {2, 13, 33}, {2, 33, 10}},         /* narrow C (N < the vector width): masked, 8 rows a loop + 5 */
    {1, {2, 40, 256}, {2, 40, 10}},        /* narrow, A transposed (a 10-class weight gradient) */
    {0, {2, 9, 5}, {2, 5, 3}},
    {0, {2, 8, 7}, {2, 7, 15}},
  };
  enum { NT = sizeof t / sizeof t[0] };
  tcase cs[NT];
  memset(cs, 0, sizeof cs);
  for (int c = 0; c < NT; c++) {
    cs[c] = C2(F, S(0), F, S(0));
    cs[c].sh[0].rank = t[c].a[0], cs[c].sh[1].rank = t[c].b[0];
    for (int d = 0; d < t[c].a[0]; d++) cs[c].sh[0].d[d] = t[c].a[1 + d];
    for (int d = 0; d < t[c].b[0]; d++) cs[c].sh[1].d[d] = t[c].b[1 + d];
    cs[c].attr.i = t[c].flags;
  }
  double e = run_op(IR_MATMUL, cs, NT);
  printf("%-14s max rel err %.3g\n", "matmul[ta,tb]", e);
  CHECK_MSG(e >= 0 && e <= 1e-5, "flagged matmul: error %g", e);
  /* x @ w -> + bias -> gelu -> res - (.) -> tanh with flagged products */
  static const int fz[5][5][4] = {
    {{1}, {2, 33, 7}, {2, 33, 5}, {1, 5}, {2, 7, 5}},                /* small, A transposed */
    {{0}, {2, 20, 33}, {2, 33, 10}, {1, 10}, {2, 20, 10}},           /* narrow: masked, then the pass */
    {{2}, {3, 2, 7, 33}, {2, 20, 33}, {1, 20}, {3, 2, 7, 20}},       /* small, B packed */
    {{3}, {2, 8, 1024}, {2, 160, 8}, {2, 1, 160}, {2, 1024, 160}},   /* cblas, epilogue pass */
    {{1}, {3, 2, 7, 3}, {2, 7, 5}, {1, 5}, {3, 2, 3, 5}},            /* batched A^T: per batch, then the pass */
  };
  tcase fc[5];
  memset(fc, 0, sizeof fc);
  for (int c = 0; c < 5; c++) {
    fc[c].nin = 4, fc[c].attr.i = fz[c][0][0];
    for (int j = 0; j < 4; j++) {
      fc[c].dt[j] = IR_F32;
      fc[c].sh[j].rank = fz[c][1 + j][0];
      for (int d = 0; d < fz[c][1 + j][0]; d++) fc[c].sh[j].d[d] = fz[c][1 + j][1 + d];
    }
  }
  e = run_op(OP_FUSED, fc, 5);
  printf("%-14s max rel err %.3g\n", "fused [ta,tb]", e);
  CHECK_MSG(e >= 0 && e <= 1e-5, "fused chains with flagged products: error %g", e);
}

/* A host without a feature the code or OpenBLAS's kernel needs is a clear
 * error (features hidden on purpose here). */
static void test_host_check(void) {
  char msg[512];
  CHECK(cg_host_check_with("+sse2,+avx", "Sandybridge", NULL, msg, sizeof msg) == 0 || 1); /* depends on the host */
  CHECK(cg_host_check_with("+sse2,+avx2,+fma", "Haswell", "+avx2", msg, sizeof msg) != 0);
  CHECK_MSG(strstr(msg, "avx2") != NULL, "%s", msg);
  CHECK(cg_host_check_with("+sse2", "SkylakeX", "+avx512f", msg, sizeof msg) != 0);
  CHECK_MSG(strstr(msg, "OpenBLAS") != NULL && strstr(msg, "avx512f") != NULL, "%s", msg);
  CHECK(cg_host_check_with("+sse2", "Prescott", "+avx,+avx2,+fma,+avx512f", msg, sizeof msg) == 0);
}

/* 100 compile+run cycles of a small MLP-like graph with parameters and a loss. */
static void test_cycles(void) {
  int fails = 0;
  for (int it = 0; it < 100; it++) {
    arena A;
    ar_init(&A);
    ir_graph g;
    ir_graph_init(&g, &A, "cyc");
    char msg[256];
    ir_loc loc = {0};
    ir_shape sx = S(2, 4, 8), sw = S(2, 8, 3), sy = S(1, 4);
    int x = ir_add_input(&g, "x", F, &sx, 0, loc), y = ir_add_input(&g, "y", I, &sy, 1, loc);
    int w = ir_add_param(&g, "w", F, &sw, IR_INIT_NORMAL, 0.1, 8, 3, loc);
    int in[2] = {x, w};
    int h = ir_add(&g, IR_MATMUL, in, 2, NULL, loc, msg, sizeof msg);
    int r = ir_add(&g, IR_RELU, &h, 1, NULL, loc, msg, sizeof msg);
    int l2[2] = {r, y};
    g.loss = ir_add(&g, IR_CROSS_ENTROPY, l2, 2, NULL, loc, msg, sizeof msg);
    ir_add_output(&g, "h", r);
    float xv[32], wv[24], out[12], loss = 0;
    int32_t yv[4] = {0, 1, 2, 1};
    for (int i = 0; i < 32; i++) xv[i] = (float)(i % 7) * 0.25f - 0.5f;
    for (int i = 0; i < 24; i++) wv[i] = (float)(i % 5) * 0.2f - 0.3f;
    void *ins[2] = {xv, yv}, *ps[1] = {wv}, *os[1] = {out};
    cg_program *p = cg_compile(&g, NULL, msg, sizeof msg);
    if (!p || cg_run(p, ins, ps, os, &loss, msg, sizeof msg) || !(loss > 0)) fails++;
    if (it == 0 && p) {
      cg_stats st;
      cg_get_stats(p, &st);
      printf("cycle graph: %d kernels (%d unique), arena %lld of %lld naive bytes, build %.1f ms, opt %.1f ms, jit %.1f ms\n",
             st.kernels, st.kernels_unique, (long long)st.arena_bytes, (long long)st.naive_bytes, st.parse_ms,
             st.llvm_opt_ms, st.jit_ms);
    }
    yv[0] = 7; /* out-of-range label: an error, not a crash */
    if (p && cg_run(p, ins, ps, os, &loss, msg, sizeof msg) == 0) fails++;
    cg_free(p);
    ar_free(&A);
  }
  CHECK_MSG(fails == 0, "%d of 100 compile+run cycles failed", fails);
}

/* Identical layers are one kernel; the plan reuses memory. */
static void test_dedup_and_plan(void) {
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "deep");
  char msg[256];
  ir_loc loc = {0};
  ir_shape sx = S(2, 16, 64), sw = S(2, 64, 64);
  int h = ir_add_input(&g, "x", F, &sx, 0, loc);
  for (int l = 0; l < 8; l++) {
    int w = ir_add_param(&g, ar_printf(&A, "w%d", l), F, &sw, IR_INIT_NORMAL, 0.1, 64, 64, loc);
    int in[2] = {h, w};
    h = ir_add(&g, IR_MATMUL, in, 2, NULL, loc, msg, sizeof msg);
    h = ir_add(&g, IR_TANH, &h, 1, NULL, loc, msg, sizeof msg);
  }
  ir_add_output(&g, "y", h);
  cg_options o = {.opt_level = 2, .keep_ir = 1};
  cg_program *p = cg_compile(&g, &o, msg, sizeof msg);
  CHECK_MSG(p != NULL, "%s", msg);
  if (p) {
    cg_stats st;
    cg_get_stats(p, &st);
    /* each tanh is fused into its product's kernel: 8 calls of one kernel */
    CHECK(st.kernels == 8 && st.kernels_unique == 1);
    CHECK(st.arena_bytes < st.naive_bytes && st.arena_bytes <= 2 * 16 * 64 * 4);
    char *ir = cg_module_text(p);
    /* products this small are generated vector loops, not cblas calls */
    CHECK(ir != NULL && strstr(ir, "fmuladd.v") != NULL && strstr(ir, "lathe_rt_sgemm") == NULL);
    free(ir);
    cg_free(p);
  }
  ar_free(&A);
}

/* No call into libm from a hot loop: every "call float @" is an intrinsic
 * (they lower to instructions), never expf/tanhf/erfcf/logf. */
static int no_scalar_libm_call(const char *ir) {
  for (const char *p = ir; (p = strstr(p, "call float @")) != NULL; p++)
    if (strncmp(p + 12, "llvm.", 5) != 0) return 0;
  return 1;
}

/* Elementwise loops, softmax, gelu and layernorm vectorise for the host:
 * vector types in the optimised IR and no scalar libm call left. */
static void test_vectorised(void) {
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "vec");
  char msg[256];
  ir_loc loc = {0};
  ir_shape s = S(2, 64, 1024), sd = S(1, 1024);
  int in[2] = {ir_add_input(&g, "a", F, &s, 0, loc), ir_add_input(&g, "b", F, &s, 0, loc)};
  int y = ir_add(&g, IR_ADD, in, 2, NULL, loc, msg, sizeof msg);
  y = ir_add(&g, IR_RELU, &y, 1, NULL, loc, msg, sizeof msg);
  ir_add_output(&g, "y", y);
  ir_attr ax = {0};
  ax.axis = 1;
  ir_add_output(&g, "sm", ir_add(&g, IR_SOFTMAX, &in[0], 1, &ax, loc, msg, sizeof msg));
  ir_add_output(&g, "ge", ir_add(&g, IR_GELU, &in[1], 1, NULL, loc, msg, sizeof msg));
  ir_attr eps = {0};
  eps.f = 1e-5;
  int ln[3] = {in[0], ir_add_input(&g, "w", F, &sd, 0, loc), ir_add_input(&g, "bias", F, &sd, 0, loc)};
  ir_add_output(&g, "ln", ir_add(&g, IR_LAYERNORM, ln, 3, &eps, loc, msg, sizeof msg));
  cg_options o = {.opt_level = 2, .keep_ir = 1};
  cg_program *p = cg_compile(&g, &o, msg, sizeof msg);
  CHECK_MSG(p != NULL, "%s", msg);
  char *ir = p ? cg_module_text(p) : NULL;
  CHECK_MSG(ir && strstr(ir, " x float>"), "no vector code in the optimised module");
  CHECK_MSG(ir && no_scalar_libm_call(ir), "a scalar libm call is left in the optimised module");
  free(ir);
  cg_free(p);
  ar_free(&A);
}

/* The object cache: a second compile hits it and runs the same; a corrupt
 * cache file is ignored (recompiled), never trusted. */
static void test_cache(void) {
  char dir[] = "/tmp/lathe_cg_cacheXXXXXX";
  if (!mkdtemp(dir)) return;
  setenv("LATHE_CACHE_DIR", dir, 1);
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "cache");
  char msg[256], path[512];
  ir_loc loc = {0};
  ir_shape s = S(2, 3, 37);
  int x = ir_add_input(&g, "x", F, &s, 0, loc);
  ir_attr ax = {0};
  ax.axis = 1;
  ir_add_output(&g, "y", ir_add(&g, IR_SOFTMAX, &x, 1, &ax, loc, msg, sizeof msg));
  float in[111], out[3][111];
  for (int i = 0; i < 111; i++) in[i] = (float)(i % 13) * 0.3f - 1.0f;
  void *ins[1] = {in};
  for (int round = 0; round < 3; round++) {
    if (round == 2) { /* corrupt every cache file */
      snprintf(path, sizeof path, "for f in %s/*.o; do printf garbage | dd of=$f bs=1 seek=100 conv=notrunc 2>/dev/null; done", dir);
      CHECK(system(path) == 0);
    }
    cg_program *p = cg_compile(&g, NULL, msg, sizeof msg);
    CHECK_MSG(p != NULL, "%s", msg);
    if (!p) break;
    cg_stats st;
    cg_get_stats(p, &st);
    CHECK_MSG(st.cache_hit == (round == 1), "round %d: cache_hit %d", round, st.cache_hit);
    void *outs[1] = {out[round]};
    CHECK(cg_run(p, ins, NULL, outs, NULL, msg, sizeof msg) == 0);
    CHECK(memcmp(out[round], out[0], sizeof out[0]) == 0);
    cg_free(p);
  }
  snprintf(path, sizeof path, "rm -rf %s", dir);
  CHECK(system(path) == 0);
  unsetenv("LATHE_CACHE_DIR");
  ar_free(&A);
}

int main(void) {
  char dir[] = "/tmp/lathe_cg_testXXXXXX"; /* never the user's cache */
  if (mkdtemp(dir)) setenv("LATHE_CACHE_DIR", dir, 1);
  test_cache();
  if (dir[0]) setenv("LATHE_CACHE_DIR", dir, 1);
  test_ops();
  test_fused();
  test_flagged_matmul();
  test_host_check();
  test_vectorised();
  test_dedup_and_plan();
  test_cycles();
  char rm[128];
  snprintf(rm, sizeof rm, "rm -rf %s", dir);
  if (system(rm) != 0) printf("could not remove %s\n", dir);
  return TEST_REPORT();
}

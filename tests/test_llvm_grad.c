/* test_llvm_grad.c -- the CPU backend's backward-op kernels (codegen/llvm/
 * cg_grad.c) against the reference interpreter in f32 mode, as test_llvm.c
 * does for the forward ops: max relative error <= 1e-5 (abs floor 0.1, the
 * same metric). The nodes come from real backward graphs: a forward op on
 * parameters, a weighted sum as the loss, autodiff, and every backward node
 * made an output. Every IR_CAT_GRAD op of ops.def must be exercised. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/llvm/cg.h"
#include "ir.h"
#include "passes/passes.h"
#include "test.h"
#include "test_ir.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

static double worst[IR_NOPS];
static int seen[IR_NOPS];

typedef struct {
  int op, nin;
  ir_dtype dt[4];
  ir_shape sh[4];
  int64_t lim;
  ir_attr attr;
} fcase;

/* Forward op on params (integer operands as inputs in [0, lim)), loss = sum(y * R). */
static void run_case(const fcase *c) {
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "t");
  char msg[512];
  ir_loc loc = {0};
  int in[4];
  for (int j = 0; j < c->nin; j++) {
    const char *name = ar_printf(&A, "a%d", j);
    if (c->op == IR_CROSS_ENTROPY && j == 2) { /* class weights: a constant in (0.2, 2.2], as the frontend makes */
      in[j] = ir_add_const(&g, IR_F32, 0.0, loc);
      double *w = ar_alloc(&A, sizeof(double) * (size_t)c->sh[j].d[0]);
      for (int64_t e = 0; e < c->sh[j].d[0]; e++) w[e] = (float)(0.2 + 2 * urand());
      g.nodes[in[j]].shape = c->sh[j];
      g.nodes[in[j]].data = w;
      continue;
    }
    in[j] = c->dt[j] == IR_F32 ? ir_add_param(&g, name, IR_F32, &c->sh[j], IR_INIT_ZEROS, 0, 1, 1, loc)
                               : ir_add_input(&g, name, c->dt[j], &c->sh[j], 0, loc);
  }
  int y = ir_add(&g, c->op, in, c->nin, &c->attr, loc, msg, sizeof msg);
  CHECK_MSG(y >= 0, "%s: %s", ir_ops[c->op].name, msg);
  if (y < 0) goto done;
  test_weighted_loss(&g, y, urand, msg, sizeof msg);
  CHECK_MSG(test_grad_outputs(&g, msg, sizeof msg) == 0, "%s: %s", ir_ops[c->op].name, msg);
  double **v = calloc((size_t)g.nnodes, sizeof *v);
  void **ins = calloc((size_t)g.ninputs + 1, sizeof *ins), **ps = calloc((size_t)g.nparams + 1, sizeof *ps);
  void **outs = calloc((size_t)g.noutputs + 1, sizeof *outs);
  for (int i = 0; i < g.ninputs; i++) {
    int64_t n = ir_numel(&g.inputs[i].shape);
    int32_t *b = malloc(4 * (size_t)n);
    v[g.inputs[i].node] = malloc(8 * (size_t)n);
    for (int64_t e = 0; e < n; e++) b[e] = (int32_t)(urand() * (double)c->lim), v[g.inputs[i].node][e] = b[e];
    ins[i] = b;
  }
  for (int p = 0; p < g.nparams; p++) {
    int64_t n = ir_numel(&g.params[p].shape);
    float *b = malloc(4 * (size_t)n);
    v[g.params[p].node] = malloc(8 * (size_t)n);
    for (int64_t e = 0; e < n; e++) b[e] = (float)(2 * urand() - 1), v[g.params[p].node][e] = b[e];
    ps[p] = b;
  }
  for (int o = 0; o < g.noutputs; o++) outs[o] = calloc((size_t)ir_numel(&g.nodes[g.outputs[o].node].shape), 4);
  cg_program *p = NULL;
  if (ir_interp(&g, IR_INTERP_F32, v, msg, sizeof msg)) {
    CHECK_MSG(0, "%s: interp: %s", ir_ops[c->op].name, msg);
  } else if (!(p = cg_compile(&g, NULL, msg, sizeof msg)) || cg_run(p, ins, ps, outs, NULL, msg, sizeof msg)) {
    CHECK_MSG(0, "%s: llvm: %s", ir_ops[c->op].name, msg);
  } else {
    for (int o = 0; o < g.noutputs; o++) {
      int id = g.outputs[o].node, op = g.nodes[id].op;
      seen[op] = 1;
      /* The floor follows the output's scale: a reduction whose terms cancel
       * (conv2d_grad_weight sums N*H*W products) loses digits relative to
       * its own result, not to the terms. f32 against the f64 reference. */
      double scale = 0.1;
      for (int64_t e = 0; e < ir_numel(&g.nodes[id].shape); e++) scale = fmax(scale, 0.05 * fabs(v[id][e]));
      for (int64_t e = 0; e < ir_numel(&g.nodes[id].shape); e++) {
        double a = ((float *)outs[o])[e], b = v[id][e];
        double err = a == b ? 0.0 : fabs(a - b) / fmax(fabs(b), scale);
        if (!(err <= worst[op])) worst[op] = err;
      }
    }
  }
  cg_free(p);
  ir_interp_release(&g, v);
  for (int i = 0; i < g.ninputs; i++) free(ins[i]), free(v[g.inputs[i].node]);
  for (int q = 0; q < g.nparams; q++) free(ps[q]), free(v[g.params[q].node]);
  for (int o = 0; o < g.noutputs; o++) free(outs[o]);
  free(v), free(ins), free(ps), free(outs);
done:
  ar_free(&A);
}

static ir_shape S(int rank, int64_t a, int64_t b, int64_t c, int64_t d) {
  ir_shape s = {.rank = rank, .d = {a, b, c, d}};
  return s;
}

static fcase F1(int op, ir_shape a) {
  fcase c = {.op = op, .nin = 1, .dt = {IR_F32}, .sh = {a}};
  return c;
}
static fcase F2(int op, ir_shape a, ir_dtype t, ir_shape b) {
  fcase c = F1(op, a);
  c.nin = 2, c.dt[1] = t, c.sh[1] = b;
  return c;
}

/* Rows along the last axis (cg_row_stats): one short vector (1, 3, 10),
 * whole vectors (16), masked tails (17, 33, 100), rows in registers (96)
 * and in a loop (257, 1000); the big shapes run their rows on the pool. */
static void test_rows(void) {
  static const int64_t L[] = {1, 3, 10, 16, 17, 33, 96, 100, 257, 1000};
  for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
    ir_shape x = S(2, 19, L[i], 0, 0), lab = S(1, 19, 0, 0, 0);
    fcase c = F1(IR_SOFTMAX, x);
    c.attr.axis = 1;
    run_case(&c);
    c.op = IR_LOG_SOFTMAX;
    if (L[i] <= 100) run_case(&c); /* longer: log_softmax_grad's dy - exp(y) sum(dy) cancels past 1e-5 */
    c = F2(IR_CROSS_ENTROPY, x, IR_I32, lab), c.lim = L[i];
    run_case(&c);
    c.attr.f = 0.1;
    run_case(&c);
  }
  fcase c = F2(IR_CROSS_ENTROPY, S(2, 2100, 257, 0, 0), IR_I32, S(1, 2100, 0, 0, 0));
  c.lim = 257, c.attr.f = 0.05;
  run_case(&c);
  c = F2(IR_CROSS_ENTROPY, S(3, 64, 96, 96, 0), IR_I32, S(2, 64, 96, 0, 0)), c.lim = 96;
  run_case(&c);
  c = F1(IR_SOFTMAX, S(2, 4096, 200, 0, 0)), c.attr.axis = 1;
  run_case(&c);
}

static void test_grad_ops(void) {
  ir_shape m = S(2, 7, 33, 0, 0);
  for (int op = 0; op < IR_NOPS; op++) /* every unary forward op: unary_grad */
    if (ir_ops[op].cat == IR_CAT_UNARY && op != IR_CAST && op != IR_NEG && op != IR_DROPOUT) {
      fcase c = F1(op, m);
      c.attr.f = op == IR_POW ? 2.0 : 0.1;
      c.attr.approx = 1;
      if (op == IR_CLAMP) c.attr.f = -0.3, c.attr.f2 = 0.4;
      if (op != IR_LOG && op != IR_SQRT && op != IR_POW) run_case(&c);
      if (op == IR_GELU) c.attr.approx = 0, run_case(&c);
    }
  fcase c = F2(IR_ADD, S(3, 2, 7, 33, 0), IR_F32, S(2, 1, 33, 0, 0)); /* sum_to */
  run_case(&c);
  c = F1(IR_MEAN, S(3, 2, 7, 33, 0)), c.attr.axis = 1; /* broadcast_to */
  run_case(&c);
  c = F1(IR_SOFTMAX, m), c.attr.axis = 1;
  run_case(&c);
  c = F1(IR_LOG_SOFTMAX, S(3, 2, 7, 3, 0)), c.attr.axis = 1;
  run_case(&c);
  c = F1(IR_MAX, S(3, 2, 7, 3, 0)), c.attr.axis = 1;
  run_case(&c);
  c = F1(IR_MIN, S(3, 2, 7, 3, 0)), c.attr.axis = 2, c.attr.keepdims = 1;
  run_case(&c);
  c = F2(IR_LAYERNORM, S(3, 2, 3, 33, 0), IR_F32, S(1, 33, 0, 0, 0));
  c.nin = 3, c.dt[2] = IR_F32, c.sh[2] = S(1, 33, 0, 0, 0), c.attr.f = 1e-5;
  run_case(&c);
  /* the channel normalisations: batchnorm's groups over the pool, groupnorm's and rmsnorm's dw in one part */
  c = F2(IR_BATCHNORM_TRAIN, S(3, 64, 6, 300, 0), IR_F32, S(1, 6, 0, 0, 0));
  c.nin = 3, c.dt[2] = IR_F32, c.sh[2] = S(1, 6, 0, 0, 0), c.attr.f = 1e-5;
  run_case(&c);
  c.sh[0] = S(2, 5, 6, 0, 0);
  run_case(&c);
  c.op = IR_GROUPNORM, c.attr.k = 3, c.sh[0] = S(3, 8, 6, 33, 0);
  run_case(&c);
  c = F2(IR_RMSNORM, S(3, 2, 3, 33, 0), IR_F32, S(1, 33, 0, 0, 0)), c.attr.f = 1e-6;
  run_case(&c);
  c = F2(IR_CONV2D, S(4, 2, 3, 7, 7), IR_F32, S(4, 4, 3, 3, 3));
  c.nin = 3, c.dt[2] = IR_F32, c.sh[2] = S(1, 4, 0, 0, 0), c.attr.stride = 2, c.attr.pad = 1, c.attr.pad_hi = 1;
  run_case(&c);
  c.attr.stride = 1, c.attr.pad = 0, c.attr.pad_hi = 2; /* asymmetric padding (conv_dx/conv_dw kernels) */
  run_case(&c);
  c.sh[0] = S(4, 3, 3, 8, 6), c.attr.stride = 2, c.attr.pad = 2, c.attr.pad_hi = 0;
  run_case(&c);
  /* 1-d, dilation, groups (ir/conv.h): grouped GEMMs, depthwise with the group loop (> 4 groups) */
  c = F2(IR_CONV2D, S(3, 2, 6, 19, 0), IR_F32, S(3, 4, 3, 3, 0));
  c.nin = 3, c.dt[2] = IR_F32, c.sh[2] = S(1, 4, 0, 0, 0), c.attr.stride = 2, c.attr.pad = 1, c.attr.pad_hi = 2;
  c.attr.n = 2, c.attr.k = 2;
  run_case(&c);
  c = F2(IR_CONV2D, S(4, 2, 8, 7, 7), IR_F32, S(4, 8, 1, 3, 3));
  c.attr.stride = 1, c.attr.pad = 2, c.attr.pad_hi = 2, c.attr.n = 2, c.attr.k = 8;
  run_case(&c);
  c = F1(IR_MAXPOOL2D, S(4, 2, 3, 8, 8)), c.attr.k = 2, c.attr.stride = 2;
  run_case(&c);
  c.op = IR_AVGPOOL2D, c.attr.k = 3, c.attr.stride = 1;
  run_case(&c);
  c = F1(IR_MAXPOOL2D, S(3, 2, 3, 17, 0)), c.attr.k = 3, c.attr.stride = 2; /* 1-d */
  run_case(&c);
  c.op = IR_AVGPOOL2D;
  run_case(&c);
  c = F2(IR_EMBEDDING, S(2, 2, 7, 0, 0), IR_F32, S(2, 33, 5, 0, 0));
  c.dt[0] = IR_I32, c.dt[1] = IR_F32, c.lim = 33;
  run_case(&c);
  c = F1(IR_SLICE, m), c.attr.axis = 1, c.attr.start = 3, c.attr.end = 20;
  run_case(&c);
  c = F2(IR_GATHER, S(3, 2, 7, 33, 0), IR_I32, S(3, 2, 9, 20, 0)); /* repeated indices add up */
  c.dt[0] = IR_F32, c.lim = 7, c.attr.axis = 1;
  run_case(&c);
  c = F1(IR_CUMSUM, m), c.attr.axis = 1;
  run_case(&c);
  c = F2(IR_CROSS_ENTROPY, S(3, 2, 3, 33, 0), IR_I32, S(2, 2, 3, 0, 0)), c.lim = 33, c.attr.f = 0.1;
  run_case(&c);
  /* class weights and an ignore_index (lathe_rt_cross_entropy), with and without smoothing */
  c = F2(IR_CROSS_ENTROPY, S(2, 9, 5, 0, 0), IR_I32, S(1, 9, 0, 0, 0)), c.lim = 5, c.attr.f = 0.1;
  c.nin = 3, c.dt[2] = IR_F32, c.sh[2] = S(1, 5, 0, 0, 0), c.attr.k = 1, c.attr.n = 2;
  run_case(&c);
  c.attr.f = 0, c.nin = 2;
  run_case(&c);
  /* the default ignore_index (attr k = 2): an ignored label present, and -100 (absent: the plain kernel) */
  c = F2(IR_CROSS_ENTROPY, S(2, 40, 5, 0, 0), IR_I32, S(1, 40, 0, 0, 0)), c.lim = 5, c.attr.k = 2, c.attr.n = 3;
  run_case(&c);
  c.attr.n = -100;
  run_case(&c);
  c = F2(IR_BCE, m, IR_F32, m);
  run_case(&c);
  c = F2(IR_NLL, S(3, 2, 3, 33, 0), IR_I32, S(2, 2, 3, 0, 0)), c.lim = 33;
  run_case(&c);
  c = F2(IR_L1, m, IR_F32, m);
  run_case(&c);
  c = F2(IR_HUBER, m, IR_F32, m), c.attr.f = 0.5;
  run_case(&c);
  test_rows();
  for (int op = 0; op < IR_NOPS; op++) {
    if (ir_ops[op].cat != IR_CAT_GRAD || op >= IR_MINIMUM) continue; /* training ops: tests/test_optim.c */
    printf("%-20s max rel err %.3g\n", ir_ops[op].name, worst[op]);
    CHECK_MSG(seen[op], "backward op %s has no llvm test case", ir_ops[op].name);
    CHECK_MSG(worst[op] <= 1e-5, "backward op %s: error %g", ir_ops[op].name, worst[op]);
  }
}

int main(void) {
  test_grad_ops();
  return TEST_REPORT();
}

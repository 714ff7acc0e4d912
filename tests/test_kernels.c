/* test_kernels.c -- the CPU backend's vectorised and parallel kernel paths
 * (codegen/llvm/cg_vec.c and the emitters that use it: sum_to, unary maps
 * and their gradients, layernorm, convolution, pooling, softmax rows) on shapes big and
 * odd enough to reach every path: full column blocks and their tails,
 * row sums, the parallel splits. Each case is a forward op on parameters,
 * loss = sum(y * R), autodiff; the forward node and every backward node are
 * outputs, checked against the reference interpreter (f32 mode) with
 * test_llvm_grad.c's metric (relative error <= 1e-5, abs floor 0.1) and for
 * bit-identical reruns. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/llvm/cg.h"
#include "ir.h"
#include "passes/passes.h"
#include "test.h"
#include "test_ir.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

typedef struct {
  int op, nin;
  ir_shape sh[3];
  ir_attr attr;
  const char *what;
  double tol; /* 0: 1e-5; products summed in f32 (conv) need more */
  int ties;   /* parameters in {-1, 0, 1}: ties for the maximum's first-wins rule */
} kcase;

static double worst;

static void compare(const ir_graph *g, double **v, void **outs, void **again, const char *what, double tol) {
  for (int o = 0; o < g->noutputs; o++) {
    int id = g->outputs[o].node;
    int64_t n = ir_numel(&g->nodes[id].shape);
    double w = 0;
    for (int64_t e = 0; e < n; e++) {
      double a = ((float *)outs[o])[e], b = v[id][e];
      double err = a == b ? 0.0 : fabs(a - b) / fmax(fabs(b), 0.1);
      if (!(err <= w)) w = err;
    }
    CHECK_MSG(w <= tol, "%s: %s (node %d): error %g", what, ir_ops[g->nodes[id].op].name, id, w);
    CHECK_MSG(memcmp(outs[o], again[o], 4 * (size_t)n) == 0, "%s: %s: reruns differ", what,
              ir_ops[g->nodes[id].op].name);
    if (w > worst) worst = w;
  }
}

static void run_case(const kcase *c) {
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "t");
  char msg[512];
  ir_loc loc = {0};
  int in[3];
  for (int j = 0; j < c->nin; j++)
    in[j] = ir_add_param(&g, ar_printf(&A, "a%d", j), IR_F32, &c->sh[j], IR_INIT_ZEROS, 0, 1, 1, loc);
  int y = ir_add(&g, c->op, in, c->nin, &c->attr, loc, msg, sizeof msg);
  CHECK_MSG(y >= 0, "%s: %s", c->what, msg);
  if (y < 0) {
    ar_free(&A);
    return;
  }
  test_weighted_loss(&g, y, urand, msg, sizeof msg);
  CHECK_MSG(test_grad_outputs(&g, msg, sizeof msg) == 0, "%s: %s", c->what, msg);
  ir_add_output(&g, "y", y);
  double **v = calloc((size_t)g.nnodes, sizeof *v);
  void **ps = calloc((size_t)g.nparams + 1, sizeof *ps), **outs = calloc((size_t)g.noutputs + 1, sizeof *outs);
  void **again = calloc((size_t)g.noutputs + 1, sizeof *again);
  for (int p = 0; p < g.nparams; p++) {
    int64_t n = ir_numel(&g.params[p].shape);
    float *b = malloc(4 * (size_t)n);
    v[g.params[p].node] = malloc(8 * (size_t)n);
    for (int64_t e = 0; e < n; e++) {
      b[e] = c->ties ? (float)(int)(3 * urand()) - 1.0f : (float)(4 * urand() - 2);
      v[g.params[p].node][e] = b[e];
    }
    ps[p] = b;
  }
  for (int o = 0; o < g.noutputs; o++) {
    size_t n = (size_t)ir_numel(&g.nodes[g.outputs[o].node].shape);
    outs[o] = calloc(n, 4), again[o] = calloc(n, 4);
  }
  cg_program *p = NULL;
  if (ir_interp(&g, IR_INTERP_F32, v, msg, sizeof msg)) {
    CHECK_MSG(0, "%s: interp: %s", c->what, msg);
  } else if (!(p = cg_compile(&g, NULL, msg, sizeof msg)) || cg_run(p, NULL, ps, outs, NULL, msg, sizeof msg) ||
             cg_run(p, NULL, ps, again, NULL, msg, sizeof msg)) {
    CHECK_MSG(0, "%s: llvm: %s", c->what, msg);
  } else {
    compare(&g, v, outs, again, c->what, c->tol > 0 ? c->tol : 1e-5);
  }
  cg_free(p);
  ir_interp_release(&g, v);
  for (int q = 0; q < g.nparams; q++) free(ps[q]), free(v[g.params[q].node]);
  for (int o = 0; o < g.noutputs; o++) free(outs[o]), free(again[o]);
  free(v), free(ps), free(outs), free(again);
  ar_free(&A);
}

static ir_shape S(int rank, int64_t a, int64_t b, int64_t c, int64_t d) {
  ir_shape s = {.rank = rank, .d = {a, b, c, d}};
  return s;
}

static kcase K2(int op, ir_shape a, ir_shape b, const char *what) {
  kcase c = {.op = op, .nin = 2, .sh = {a, b}, .what = what};
  return c;
}

static void run2(kcase c) { run_case(&c); }

/* sum_to over every grouping of reduced and kept axes */
static void test_sum_to(void) {
  run2(K2(IR_ADD, S(3, 16, 64, 300, 0), S(1, 300, 0, 0, 0), "bias [16,64,300]"));
  run2(K2(IR_ADD, S(3, 4, 128, 600, 0), S(2, 128, 600, 0, 0), "leading axis [4,128,600]"));
  run2(K2(IR_ADD, S(2, 33, 1, 0, 0), S(2, 33, 500, 0, 0), "rows [33,500]"));
  run2(K2(IR_ADD, S(2, 600, 1, 0, 0), S(2, 600, 700, 0, 0), "rows [600,700]"));
  run2(K2(IR_ADD, S(2, 2048, 1, 0, 0), S(2, 2048, 2100, 0, 0), "rows in parallel [2048,2100]"));
  run2(K2(IR_ADD, S(2, 256, 1100, 0, 0), S(3, 16, 256, 1100, 0), "columns in parallel [16,256,1100]"));
  run2(K2(IR_MUL, S(3, 5, 1, 40, 0), S(3, 5, 7, 40, 0), "middle axis [5,7,40]"));
  run2(K2(IR_MUL, S(3, 1, 7, 1, 0), S(3, 6, 7, 5, 0), "outer and inner [6,7,5]"));
  run2(K2(IR_ADD, S(4, 3, 1, 1, 5), S(4, 3, 4, 6, 5), "[3,4,6,5] to [3,1,1,5]"));
  run2(K2(IR_ADD, S(0, 0, 0, 0, 0), S(2, 7, 9, 0, 0), "to a scalar"));
  run2(K2(IR_ADD, S(2, 1, 1, 0, 0), S(2, 1, 1, 0, 0), "ones"));
}

/* big enough shapes take the parallel paths (cg_vec.h's CG_PAR_WORK) */
static void test_unary(void) {
  static const int ops[] = {IR_GELU, IR_TANH, IR_SIGMOID, IR_SWISH, IR_RELU, IR_LEAKY_RELU, IR_EXP, IR_ABS};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    for (int big = 0; big < 2; big++) {
      kcase c = {.op = ops[i], .nin = 1, .sh = {big ? S(3, 8, 64, 1100, 0) : S(2, 7, 33, 0, 0)}, .what = "unary"};
      c.attr.f = 0.1;
      run_case(&c);
      if (ops[i] == IR_GELU) c.attr.approx = 1, run_case(&c);
    }
}

/* sum, mean and max over a leading or middle axis: column reductions */
static void test_reduce(void) {
  static const int ops[] = {IR_SUM, IR_MEAN, IR_MAX};
  for (int i = 0; i < 3; i++)
    for (int ax = 0; ax < 2; ax++) {
      kcase c = {.op = ops[i], .nin = 1, .sh = {S(3, 16, 300, 200, 0)}, .what = "reduce"};
      c.attr.axis = ax;
      run_case(&c);
    }
}

static void test_layernorm(void) {
  static const int64_t d[] = {33, 128, 200};
  for (int i = 0; i < 3; i++) {
    kcase c = {.op = IR_LAYERNORM, .nin = 3, .what = "layernorm"};
    c.sh[0] = S(2, i == 1 ? 1024 : i == 2 ? 2000 : 37, d[i], 0, 0), c.sh[1] = c.sh[2] = S(1, d[i], 0, 0, 0), c.attr.f = 1e-5;
    run_case(&c);
  }
}

static void test_conv_pool(void) {
  kcase c = {.op = IR_CONV2D, .nin = 3, .what = "conv2d", .tol = 5e-4};
  c.sh[0] = S(4, 20, 1, 8, 8), c.sh[1] = S(4, 16, 1, 3, 3), c.sh[2] = S(1, 16, 0, 0, 0);
  c.attr.stride = 1, c.attr.pad = 1, c.attr.pad_hi = 1;
  run_case(&c);
  c.sh[0] = S(4, 9, 5, 7, 6), c.sh[1] = S(4, 6, 5, 3, 3), c.sh[2] = S(1, 6, 0, 0, 0);
  c.attr.stride = 2, c.attr.pad = 2, c.attr.pad_hi = 0;
  run_case(&c);
  c.attr.stride = 1, c.attr.pad = 0, c.attr.pad_hi = 2;
  run_case(&c);
  c.nin = 2, c.sh[1] = S(4, 4, 5, 1, 1), c.attr.stride = 1, c.attr.pad = 0, c.attr.pad_hi = 0; /* 1x1, no bias */
  run_case(&c);
  kcase p = {.op = IR_MAXPOOL2D, .nin = 1, .sh = {S(4, 9, 5, 8, 8)}, .what = "maxpool"};
  p.attr.k = 2, p.attr.stride = 2;
  run_case(&p);
  p.ties = 1;
  run_case(&p);
  p.sh[0] = S(4, 2, 3, 6, 6), p.attr.k = 3, p.attr.stride = 3; /* tiles of 3 */
  run_case(&p);
  p.ties = 0;
  p.sh[0] = S(4, 3, 4, 9, 7), p.attr.k = 3, p.attr.stride = 2;
  run_case(&p);
  p.ties = 1;
  run_case(&p);
  p.ties = 0;
  p.op = IR_AVGPOOL2D, p.what = "avgpool";
  run_case(&p);
  p.sh[0] = S(4, 64, 16, 8, 8), p.attr.k = 2, p.attr.stride = 2;
  run_case(&p);
  p.sh[0] = S(4, 5, 3, 6, 6), p.attr.k = 3, p.attr.stride = 3;
  run_case(&p);
  p.op = IR_MAXPOOL2D, p.what = "maxpool", p.sh[0] = S(4, 2, 3, 64, 32), p.attr.k = 2, p.attr.stride = 2;
  run_case(&p); /* OW 16 */
  p.sh[0] = S(4, 1, 2, 64, 64); /* OW 32: the scalar loops */
  run_case(&p);
  p.sh[0] = S(4, 7, 1, 1, 1), p.attr.k = 1, p.attr.stride = 1;
  run_case(&p);
}

/* softmax rows (cg_row_stats): short, masked, in registers, in a loop,
 * and on the pool (bit-identical reruns whatever the thread timing) */
static void test_rows(void) {
  static const int64_t L[] = {1, 3, 10, 17, 96, 257};
  for (size_t i = 0; i < sizeof L / sizeof L[0]; i++)
    for (int lg = 0; lg < 2; lg++) {
      kcase c = {.op = lg ? IR_LOG_SOFTMAX : IR_SOFTMAX, .nin = 1, .sh = {S(2, 37, L[i], 0, 0)}, .what = "rows"};
      c.attr.axis = 1;
      run_case(&c);
    }
  kcase c = {.op = IR_SOFTMAX, .nin = 1, .sh = {S(2, 4096, 200, 0, 0)}, .what = "rows in parallel"};
  c.attr.axis = 1;
  run_case(&c);
  c.op = IR_LOG_SOFTMAX, c.sh[0] = S(3, 3, 700, 257, 0), c.attr.axis = 2;
  c.tol = 5e-5; /* log_softmax_grad's dy - exp(y) sum(dy) cancels more as rows grow */
  run_case(&c);
}

int main(void) {
  test_sum_to();
  test_unary();
  test_reduce();
  test_layernorm();
  test_conv_pool();
  test_rows();
  printf("worst relative error %.3g\n", worst);
  return TEST_REPORT();
}

/* test_fuse.c -- the elementwise fusion pass (passes/fuse.c) and the fused
 * op it makes (IR_FUSED: ir/fused.c, ir/interp_fused.c, codegen/llvm/cg_fused.c).
 *  - the rewrite on small graphs, text before and after exactly, and graphs
 *    it must leave alone (an output or a second reader in the middle);
 *  - random elementwise graphs (fan-out, every broadcast form, odd sizes and
 *    one big enough to run in parallel): the fused graph on the interpreter
 *    is bit-identical to the unfused one (the reference kernel runs the same
 *    steps), and the LLVM kernel matches it within 1e-5 of the output scale;
 *  - a fused node as a product's epilogue in the CPU backend, the backward's
 *    dy * f'(x) included, and a bias alone (filled in before the product);
 *  - the shape rule and verifier reject broken programs;
 *  - training steps: fewer kernels and bytes after fusion;
 *  - a residual add and the layernorm reading it as one kernel, the gradient's
 *    mirror (r + dx), and when not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/llvm/cg.h"
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/optimizer.h"
#include "passes/passes.h"
#include "runtime/train.h"
#include "tests/test.h"
#include "tests/test_ir.h"

static const ir_loc L0 = {0};

/* Parse and lower src (dims bound to 2) into g. */
static int lower(const char *src, ir_graph *g) {
  char *err = NULL;
  fe_model *m = fe_parse("t.nn", src, strlen(src), &err);
  if (!m) {
    fprintf(stderr, "parse failed:\n%s", err);
    free(err);
    return -1;
  }
  int64_t vals[8] = {2, 2, 2, 2, 2, 2, 2, 2};
  int rc = fe_lower(m, vals, g, &err);
  fe_free(m);
  if (rc) {
    fprintf(stderr, "lower failed:\n%s", err);
    free(err);
  }
  return rc;
}

/* ps_fuse on src's graph: the text after must be want (NULL: unchanged). */
static void expect_fuse(const char *what, const char *src, const char *want) {
  arena A;
  ir_graph g;
  ar_init(&A);
  ir_graph_init(&g, &A, "t");
  CHECK_MSG(lower(src, &g) == 0, "%s: does not lower", what);
  char *before = test_text_of(&g), msg[512] = "";
  int n = ps_fuse(&g, msg, sizeof msg);
  char *after = test_text_of(&g);
  CHECK_MSG(n >= 0 && ir_verify(&g, msg, sizeof msg) == 0, "%s: %s", what, msg);
  CHECK_MSG(want ? n > 0 : n == 0, "%s: %d rewrites", what, n);
  CHECK_MSG(!strcmp(after, want ? want : before), "%s:\n--- before\n%s--- got\n%s--- want\n%s", what, before,
            after, want ? want : before);
  free(before);
  free(after);
  ar_free(&A);
}

static void test_rewrite(void) {
  expect_fuse("a chain with a bias row and a scalar",
              "input x : f32[2, 3]\n"
              "input y : f32[2, 3]\n"
              "b = param([3], name=\"b\")\n"
              "output out = relu(x * y + b) * 2\n",
              "model t\n"
              "%0 = input x : f32[2, 3]\n"
              "%1 = input y : f32[2, 3]\n"
              "%2 = param b : f32[3]\n"
              "%3 = const 2 : f32[]\n"
              "%4 = fused(%0, %1, %2, %3) [mul($0, $1); add(@0, $2); relu(@1); mul(@2, $3)] : f32[2, 3]  # out\n"
              "output out = %4\n");
}

static void test_unchanged(void) {
  expect_fuse("an output in the middle stays a tensor",
              "input x : f32[2, 3]\n"
              "output a = exp(x)\n"
              "output b = neg(a)\n", NULL);
  expect_fuse("a value read twice is computed once",
              "input x : f32[2, 3]\n"
              "a = exp(x)\n"
              "output b = neg(a)\n"
              "output c = tanh(a)\n", NULL);
  expect_fuse("a smaller value is not recomputed per element",
              "input x : f32[2, 3]\n"
              "b = param([3], name=\"b\")\n"
              "output y = x + exp(b)\n", NULL);
  expect_fuse("reductions and products are not elementwise",
              "input x : f32[2, 3]\n"
              "output y = softmax(x) @ transpose(x, [1, 0])\n", NULL);
}

/* ---- random elementwise graphs ---- */

typedef struct {
  ir_graph g;
  arena A;
  int nin;
  double *in[16];
} rgraph;

static uint64_t rng_state;
static uint32_t rnd(void) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(rng_state >> 33);
}
static double urand(double lo, double hi) { return lo + (hi - lo) * (rnd() / 2147483648.0); }

static const int unary_ops[] = {IR_RELU, IR_LEAKY_RELU, IR_SIGMOID, IR_TANH, IR_GELU, IR_SWISH,
                                IR_EXP,  IR_SQRT,       IR_ABS,     IR_NEG};
static const int binary_ops[] = {IR_ADD, IR_SUB, IR_MUL, IR_DIV, IR_MINIMUM};

/* A fresh input of out's shape in one of the broadcast forms. */
static int new_input(rgraph *r, int64_t R, int64_t C, int form) {
  ir_shape s = {2, {R, C}};
  if (form == 1) s = (ir_shape){0, {0}};
  if (form == 2) s = (ir_shape){1, {C}};
  if (form == 3) s = (ir_shape){2, {R, 1}};
  char name[16];
  snprintf(name, sizeof name, "in%d", r->nin);
  int id = ir_add_input(&r->g, ar_strdup(&r->A, name), IR_F32, &s, 0, L0);
  int64_t n = ir_numel(&s);
  r->in[r->nin] = malloc(sizeof(double) * (size_t)n);
  for (int64_t e = 0; e < n; e++) r->in[r->nin][e] = (double)(float)urand(0.25, 2.0);
  r->nin++;
  return id;
}

/* The same graph for the same seed: values in vals[] (full shape nodes);
 * ops pick earlier values, so some have several readers. */
static void build_random(rgraph *r, uint64_t seed, int64_t R, int64_t C) {
  rng_state = seed;
  ar_init(&r->A);
  ir_graph_init(&r->g, &r->A, "random");
  r->nin = 0;
  int vals[64], nv = 0;
  vals[nv++] = new_input(r, R, C, 0);
  vals[nv++] = new_input(r, R, C, 0);
  int steps = 3 + (int)(rnd() % 10);
  char msg[256];
  for (int s = 0; s < steps; s++) {
    int a = vals[nv - 1 - (int)(rnd() % (unsigned)(nv < 3 ? nv : 3))], id;
    if (rnd() % 3 == 0) {
      ir_attr at = {0};
      at.f = 0.1;
      at.approx = (int)(rnd() % 2);
      int op = unary_ops[rnd() % (sizeof unary_ops / sizeof unary_ops[0])];
      if (op == IR_LOG || op == IR_SQRT) a = ir_add(&r->g, IR_ABS, &a, 1, NULL, L0, msg, sizeof msg);
      if (rnd() % 3 == 0) { /* the backward's dy * f'(x) (a two-operand step) */
        int in[2] = {a, vals[rnd() % (unsigned)nv]};
        at.i = op;
        id = ir_add(&r->g, IR_UNARY_GRAD, in, 2, &at, L0, msg, sizeof msg);
      } else {
        id = ir_add(&r->g, op, &a, 1, &at, L0, msg, sizeof msg);
      }
    } else {
      int b = rnd() % 2 && r->nin < 12 ? new_input(r, R, C, (int)(rnd() % 4)) : vals[rnd() % (unsigned)nv];
      int in[2] = {a, b};
      if (rnd() % 2) in[0] = b, in[1] = a;
      id = ir_add(&r->g, binary_ops[rnd() % 5], in, 2, NULL, L0, msg, sizeof msg);
    }
    if (id < 0) fprintf(stderr, "build_random: %s\n", msg);
    vals[nv++] = id;
  }
  ir_add_output(&r->g, "y", vals[nv - 1]);
  if (rnd() % 3 == 0) ir_add_output(&r->g, "mid", vals[nv / 2]);
}

static void free_random(rgraph *r) {
  for (int j = 0; j < r->nin; j++) free(r->in[j]);
  ar_free(&r->A);
}

/* Interpret g; the outputs' values (malloc'd, concatenated). */
static double *interp_outputs(const ir_graph *g, double *const *in, ir_interp_mode mode, int64_t *count) {
  double **vals = calloc((size_t)g->nnodes, sizeof *vals);
  for (int j = 0; j < g->ninputs; j++) vals[g->inputs[j].node] = in[j];
  char msg[512];
  double *out = NULL;
  *count = 0;
  if (ir_interp(g, mode, vals, msg, sizeof msg) == 0) {
    for (int o = 0; o < g->noutputs; o++) *count += ir_numel(&g->nodes[g->outputs[o].node].shape);
    out = malloc(sizeof(double) * (size_t)*count);
    int64_t at = 0;
    for (int o = 0; o < g->noutputs; o++) {
      int id = g->outputs[o].node;
      int64_t n = ir_numel(&g->nodes[id].shape);
      memcpy(out + at, vals[id], sizeof(double) * (size_t)n);
      at += n;
    }
  } else {
    fprintf(stderr, "interp: %s\n", msg);
  }
  ir_interp_release(g, vals);
  free(vals);
  return out;
}

/* The LLVM program's outputs as doubles, or NULL; its kernel count in
 * *kernels when non-NULL. */
static double *llvm_outputs_k(const ir_graph *g, double *const *in, int64_t count, int *kernels) {
  char msg[512];
  cg_program *p = cg_compile(g, NULL, msg, sizeof msg);
  CHECK_MSG(p != NULL, "cg_compile: %s", msg);
  if (!p) return NULL;
  void *ins[16], *outs[4];
  for (int j = 0; j < g->ninputs; j++) {
    int64_t n = ir_numel(&g->inputs[j].shape);
    float *f = malloc(sizeof(float) * (size_t)n);
    for (int64_t e = 0; e < n; e++) f[e] = (float)in[j][e];
    ins[j] = f;
  }
  float *flat = malloc(sizeof(float) * (size_t)count);
  int64_t at = 0;
  for (int o = 0; o < g->noutputs; o++) {
    outs[o] = flat + at;
    at += ir_numel(&g->nodes[g->outputs[o].node].shape);
  }
  double *out = NULL;
  if (cg_run(p, ins, NULL, outs, NULL, msg, sizeof msg) == 0) {
    out = malloc(sizeof(double) * (size_t)count);
    for (int64_t e = 0; e < count; e++) out[e] = flat[e];
  } else {
    CHECK_MSG(0, "cg_run: %s", msg);
  }
  cg_stats st;
  cg_get_stats(p, &st);
  if (kernels) *kernels = st.kernels;
  for (int j = 0; j < g->ninputs; j++) free(ins[j]);
  free(flat);
  cg_free(p);
  return out;
}

static double *llvm_outputs(const ir_graph *g, double *const *in, int64_t count) {
  return llvm_outputs_k(g, in, count, NULL);
}

/* Worst |a - b| over the scale of b (non-finite values must agree). */
static double scaled_err(const double *a, const double *b, int64_t n) {
  double scale = 1e-3, worst = 0;
  for (int64_t e = 0; e < n; e++)
    if (isfinite(b[e]) && fabs(b[e]) > scale) scale = fabs(b[e]);
  for (int64_t e = 0; e < n; e++) {
    if (!isfinite(a[e]) || !isfinite(b[e])) {
      if (!(isnan(a[e]) && isnan(b[e])) && a[e] != b[e]) return INFINITY;
      continue;
    }
    double d = fabs(a[e] - b[e]) / scale;
    worst = d > worst ? d : worst;
  }
  return worst;
}

static int same_bits(const double *a, const double *b, int64_t n) {
  for (int64_t e = 0; e < n; e++)
    if (memcmp(&a[e], &b[e], sizeof(double)) && !(isnan(a[e]) && isnan(b[e]))) return 0;
  return 1;
}

static void test_random(void) {
  static const int64_t sizes[][2] = {{1, 1}, {7, 33}, {4, 16}, {33, 7}, {64, 64}, {300, 512}};
  int fused_nodes = 0, cases = 0, grad_steps = 0;
  double worst = 0;
  for (int sz = 0; sz < 6; sz++)
    for (uint64_t seed = 1; seed <= (sz == 5 ? 3u : 8u); seed++) {
      int64_t R = sizes[sz][0], C = sizes[sz][1];
      rgraph plain, fused;
      build_random(&plain, seed * 977 + (uint64_t)sz, R, C);
      build_random(&fused, seed * 977 + (uint64_t)sz, R, C);
      char msg[512] = "";
      int made = ps_fuse(&fused.g, msg, sizeof msg);
      CHECK_MSG(made >= 0 && ir_verify(&fused.g, msg, sizeof msg) == 0, "seed %llu: %s", (unsigned long long)seed, msg);
      fused_nodes += made > 0 ? made : 0;
      cases++;
      for (int i = 0; i < fused.g.nnodes; i++)
        for (int st = 0; fused.g.nodes[i].fusion && st < fused.g.nodes[i].fusion->nsteps; st++)
          grad_steps += fused.g.nodes[i].fusion->step[st].op == IR_UNARY_GRAD;
      for (int mode = 0; mode < 2; mode++) {
        int64_t n1, n2;
        double *a = interp_outputs(&plain.g, plain.in, (ir_interp_mode)mode, &n1);
        double *b = interp_outputs(&fused.g, plain.in, (ir_interp_mode)mode, &n2);
        CHECK_MSG(a && b && n1 == n2 && same_bits(a, b, n1), "size %lldx%lld seed %llu mode %d: fused != unfused",
                  (long long)R, (long long)C, (unsigned long long)seed, mode);
        if (mode == IR_INTERP_F32 && a && n1 == n2) {
          double *l = llvm_outputs(&fused.g, plain.in, n1);
          double e = l ? scaled_err(l, a, n1) : INFINITY;
          worst = e > worst ? e : worst;
          CHECK_MSG(e <= 1e-5, "size %lldx%lld seed %llu: llvm error %g", (long long)R, (long long)C,
                    (unsigned long long)seed, e);
          if (e > 1e-5) ir_print(&fused.g, stderr);
          free(l);
        }
        free(a);
        free(b);
      }
      free_random(&plain);
      free_random(&fused);
    }
  printf("random graphs: %d, fused nodes made: %d (unary_grad steps in them: %d), worst llvm error %.3g\n", cases,
         fused_nodes, grad_steps, worst);
  CHECK(fused_nodes >= cases && grad_steps >= 5);
}

/* ---- as a product's epilogue ---- */

/* g's interpreter outputs (f32, seeded inputs uniform in [lo, hi)) against
 * the LLVM program's after ps_fuse, which must agree within 1e-5 of the
 * output scale (printed with what); the fuse pass's rewrites in *made and
 * the program's kernel count in *kernels. */
static void fused_vs_interp(ir_graph *g, const char *what, uint64_t seed, double lo, double hi, int *made,
                            int *kernels) {
  double *in[16] = {0};
  rng_state = seed;
  for (int j = 0; j < g->ninputs && j < 16; j++) {
    int64_t k = ir_numel(&g->inputs[j].shape);
    in[j] = malloc(sizeof(double) * (size_t)k);
    for (int64_t e = 0; e < k; e++) in[j][e] = (double)(float)urand(lo, hi);
  }
  int64_t n;
  double *ref = interp_outputs(g, in, IR_INTERP_F32, &n);
  char msg[512] = "";
  *made = ps_fuse(g, msg, sizeof msg);
  CHECK_MSG(*made >= 0, "%s", msg);
  double *got = ref ? llvm_outputs_k(g, in, n, kernels) : NULL;
  double e = got ? scaled_err(got, ref, n) : INFINITY;
  printf("%s: %d kernel(s), llvm error %.3g\n", what, *kernels, e);
  CHECK_MSG(e <= 1e-5, "%s: error %g", what, e);
  free(ref);
  free(got);
  for (int j = 0; j < g->ninputs && j < 16; j++) free(in[j]);
}

static void test_epilogue(void) {
  static const int64_t dims[][3] = {{5, 7, 33}, {64, 128, 256}};
  for (int c = 0; c < 2; c++) {
    int64_t M = dims[c][0], K = dims[c][1], N = dims[c][2];
    char src[1024];
    snprintf(src, sizeof src,
             "input x : f32[%lld, %lld]\n"
             "input w : f32[%lld, %lld]\n"
             "input b : f32[%lld]\n"
             "input s : f32[%lld, 1]\n"
             "input r : f32[%lld, %lld]\n"
             "output y = (gelu(x @ w + b) * s + r) |> tanh\n",
             (long long)M, (long long)K, (long long)K, (long long)N, (long long)N, (long long)M, (long long)M,
             (long long)N);
    arena A;
    ir_graph g;
    ar_init(&A);
    ir_graph_init(&g, &A, "epi");
    CHECK(lower(src, &g) == 0);
    int made = 0, kernels = 0;
    char what[64];
    snprintf(what, sizeof what, "epilogue %lldx%lldx%lld", (long long)M, (long long)K, (long long)N);
    fused_vs_interp(&g, what, 5 + (uint64_t)c, -1, 1, &made, &kernels);
    CHECK(made == 1);
    int fz = g.outputs[0].node;
    CHECK(g.nodes[fz].op == IR_FUSED && g.nodes[g.nodes[fz].in[0]].op == IR_MATMUL);
    CHECK_MSG(kernels == 1, "the product and its fused tail are %d kernels, want 1", kernels);
    ar_free(&A);
  }
}

/* A dense layer alone (x @ w + b, the bias a step of its own, as GPT-2's
 * head): a cblas-sized product fills its result with the bias and adds
 * the product to it (beta = 1), no pass after it; small ones keep the
 * bias in registers. Both against the interpreter, one kernel each. */
static void test_bias_epilogue(void) {
  static const int64_t dims[][3] = {{5, 7, 33}, {64, 128, 256}, {301, 96, 203}};
  for (int c = 0; c < 3; c++) {
    long long M = dims[c][0], K = dims[c][1], N = dims[c][2];
    char src[512];
    snprintf(src, sizeof src,
             "input x : f32[%lld, %lld]\n"
             "input w : f32[%lld, %lld]\n"
             "input b : f32[%lld]\n"
             "output y = x @ w + b\n",
             M, K, K, N, N);
    arena A;
    ir_graph g;
    ar_init(&A);
    ir_graph_init(&g, &A, "bias");
    CHECK(lower(src, &g) == 0);
    int made = 0, kernels = 0;
    char what[64];
    snprintf(what, sizeof what, "bias epilogue %lldx%lldx%lld", M, K, N);
    fused_vs_interp(&g, what, 21 + (uint64_t)c, -1, 1, &made, &kernels);
    CHECK_MSG(kernels == 1, "the product and its bias are %d kernels, want 1", kernels);
    ar_free(&A);
  }
}

/* The backward of gelu(x @ w): dy * gelu'(z) with dy a product read by it
 * alone becomes a one-step program, and the backend runs it as that
 * product's epilogue: one kernel. */
static void test_grad_epilogue(void) {
  static const int64_t dims[][3] = {{5, 7, 33}, {64, 128, 256}};
  for (int c = 0; c < 2; c++) {
    int64_t M = dims[c][0], K = dims[c][1], N = dims[c][2];
    arena A;
    ir_graph g;
    ar_init(&A);
    ir_graph_init(&g, &A, "gepi");
    ir_shape sd = {2, {M, K}}, sw = {2, {N, K}}, sz = {2, {M, N}};
    int d = ir_add_input(&g, "d", IR_F32, &sd, 0, L0), w = ir_add_input(&g, "w", IR_F32, &sw, 0, L0);
    int z = ir_add_input(&g, "z", IR_F32, &sz, 0, L0);
    char msg[512];
    ir_attr mt = {0}, gt = {0};
    mt.i = IR_MM_TB;
    gt.i = IR_GELU;
    int mm_in[2] = {d, w};
    int mm = ir_add(&g, IR_MATMUL, mm_in, 2, &mt, L0, msg, sizeof msg);
    int ug_in[2] = {z, mm};
    int ug = ir_add(&g, IR_UNARY_GRAD, ug_in, 2, &gt, L0, msg, sizeof msg);
    CHECK_MSG(mm >= 0 && ug >= 0, "%s", msg);
    ir_add_output(&g, "dz", ug);
    int made = 0, kernels = 0;
    char what[64];
    snprintf(what, sizeof what, "gradient epilogue %lldx%lldx%lld", (long long)M, (long long)K, (long long)N);
    fused_vs_interp(&g, what, 11 + (uint64_t)c, -2, 2, &made, &kernels);
    CHECK(made == 1);
    const ir_node *fz = &g.nodes[g.outputs[0].node];
    CHECK(fz->op == IR_FUSED && fz->fusion->nsteps == 1 && fz->fusion->step[0].op == IR_UNARY_GRAD);
    CHECK_MSG(kernels == 1, "the product and dy * f'(z) are %d kernels, want 1", kernels);
    ar_free(&A);
  }
}

/* A link read again later (z, read by gelu and by the last product's
 * tail) stays a link: the product's kernel also stores z. Small products
 * (in registers) and cblas ones (a pass after) both. */
static void test_saved_link(void) {
  static const int64_t dims[][3] = {{6, 5, 9}, {256, 128, 512}};
  for (int c = 0; c < 2; c++) {
    char src[512];
    long long M = dims[c][0], K = dims[c][1], N = dims[c][2];
    snprintf(src, sizeof src,
             "input x : f32[%lld, %lld]\n"
             "input w : f32[%lld, %lld]\n"
             "input b : f32[%lld]\n"
             "input v : f32[%lld, %lld]\n"
             "z = x @ w + b\n"
             "output y = (gelu(z) @ v) * z\n",
             M, K, K, N, N, N, N);
    arena A;
    ir_graph g;
    ar_init(&A);
    ir_graph_init(&g, &A, "save");
    CHECK(lower(src, &g) == 0);
    int made = 0, kernels = 0;
    char what[64];
    snprintf(what, sizeof what, "saved link %lldx%lldx%lld", M, K, N);
    fused_vs_interp(&g, what, 21 + (uint64_t)c, -1, 1, &made, &kernels);
    /* x @ w + b -> gelu (z saved) and gelu(z) @ v * z: two kernels */
    CHECK_MSG(kernels == 2, "%lldx%lldx%lld: %d kernels, want 2", M, K, N, kernels);
    ar_free(&A);
  }
}

/* An Adam-like update: three fused outputs, the last reading the other
 * two, run as one loop (siblings): one kernel, the interpreter's values,
 * and every output's finiteness checked. A reader between two candidates
 * keeps them apart. */
static void test_siblings(void) {
  static const int64_t dims[][2] = {{5, 37}, {300, 512}};
  for (int c = 0; c < 3; c++) {
    long long R = dims[c % 2][0], C = dims[c % 2][1];
    char src[1024];
    snprintf(src, sizeof src,
             "input g : f32[%lld, %lld]\n"
             "input m : f32[%lld, %lld]\n"
             "input v : f32[%lld, %lld]\n"
             "input p : f32[%lld, %lld]\n"
             "output nm = m * 0.9 + g * 0.1\n"
             "%s"
             "output nv = v * 0.99 + g * g * 0.01\n"
             "output np = p - 0.1 * nm / (sqrt(nv) + 1e-8)\n",
             R, C, R, C, R, C, R, C, c == 2 ? "output s = softmax(nm)\n" : "");
    arena A;
    ir_graph g;
    ar_init(&A);
    ir_graph_init(&g, &A, "sib");
    CHECK(lower(src, &g) == 0);
    int made = 0, kernels = 0;
    char what[64];
    snprintf(what, sizeof what, "siblings %lldx%lld%s", R, C, c == 2 ? " (a reader between)" : "");
    fused_vs_interp(&g, what, 31 + (uint64_t)c, 0.1, 1, &made, &kernels);
    CHECK(made == 3);
    int want = c == 2 ? 3 : 1; /* the softmax reads nm between nm and nv: nm alone, then nv + np, and the softmax */
    CHECK_MSG(kernels == want, "siblings %lldx%lld (%d): %d kernels, want %d", R, C, c, kernels, want);
    char msg[512];
    cg_program *p = cg_compile(&g, NULL, msg, sizeof msg);
    CHECK_MSG(p && cg_output_checked(p, 0) && cg_output_checked(p, 1 + (c == 2)) && cg_output_checked(p, 2 + (c == 2)),
              "siblings: outputs not checked");
    cg_free(p);
    ar_free(&A);
  }
}

/* Clipped gradients first, their updates later (a training step's order):
 * a clip g * s read only by fused nodes becomes a one-step program, and it
 * joins its update's loop across the nodes between (several sibling
 * groups open at once): two kernels. */
static void test_siblings_apart(void) {
  arena A;
  ir_graph g;
  ar_init(&A);
  ir_graph_init(&g, &A, "apart");
  CHECK(lower("input g1 : f32[6, 35]\n"
              "input g2 : f32[6, 35]\n"
              "input s : f32[1]\n"
              "input m1 : f32[6, 35]\n"
              "input m2 : f32[6, 35]\n"
              "c1 = g1 * s\n"
              "c2 = g2 * s\n"
              "output n1 = m1 * 0.9 + c1 * 0.1\n"
              "output v1 = m1 * c1 + c1 * c1\n"
              "output n2 = m2 * 0.9 + c2 * 0.1\n", &g) == 0);
  int made = 0, kernels = 0;
  fused_vs_interp(&g, "siblings apart", 41, -1, 1, &made, &kernels);
  /* c1 (read by two programs) becomes a one-step program; c2, read by n2
   * alone, goes into n2's */
  CHECK_MSG(made == 4, "%d fused nodes, want 4", made);
  CHECK_MSG(kernels == 2, "siblings apart: %d kernels, want 2", kernels);
  ar_free(&A);
}

/* A rows x 128 graph's four inputs, named names[k]; vec[k]: a [128] vector instead. */
static void norm_inputs(ir_graph *g, int64_t rows, const char *const names[4], const int vec[4], int *id) {
  ir_shape sx = {2, {rows, 128}}, sv = {1, {128}};
  for (int k = 0; k < 4; k++) id[k] = ir_add_input(g, names[k], IR_F32, vec[k] ? &sv : &sx, 0, L0);
}

/* The LLVM program's values are the interpreter's and it has want kernels. */
static void expect_kernels(ir_graph *g, const char *what, uint64_t seed, int want) {
  int made = 0, kernels = 0;
  fused_vs_interp(g, what, seed, -2, 2, &made, &kernels);
  CHECK_MSG(kernels == want, "%s: %d kernels, want %d", what, kernels, want);
}

/* x = u + a; h = layernorm(x) with x read again later (a transformer
 * block's residual stream): one kernel stores x and h (split over the pool
 * at 256 rows), with the interpreter's values. Another reader of x between
 * the add and the layernorm keeps them apart. */
static void test_residual_norm(void) {
  static const struct {
    int64_t rows;
    int between, want_kernels;
  } cases[] = {{5, 0, 2}, {256, 0, 2}, {256, 1, 4}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    arena A;
    ir_graph g;
    ar_init(&A);
    ir_graph_init(&g, &A, "resnorm");
    static const char *const names[4] = {"u", "a", "w", "b"};
    static const int vec[4] = {0, 0, 1, 1};
    int id[4];
    norm_inputs(&g, cases[c].rows, names, vec, id);
    int u = id[0], a = id[1], w = id[2], b = id[3];
    char msg[512];
    ir_attr none = {0}, eps = {0};
    eps.f = 1e-5;
    int x_in[2] = {u, a};
    int x = ir_add(&g, IR_ADD, x_in, 2, &none, L0, msg, sizeof msg);
    int t = cases[c].between ? ir_add(&g, IR_EXP, &x, 1, &none, L0, msg, sizeof msg) : -1;
    int ln_in[3] = {x, w, b};
    int h = ir_add(&g, IR_LAYERNORM, ln_in, 3, &eps, L0, msg, sizeof msg);
    int y_in[2] = {h, x}; /* x read again after the layernorm */
    int y = ir_add(&g, IR_MUL, y_in, 2, &none, L0, msg, sizeof msg);
    CHECK_MSG(x >= 0 && h >= 0 && y >= 0, "%s", msg);
    ir_add_output(&g, "y", y);
    if (t >= 0) ir_add_output(&g, "t", t);
    char what[80];
    snprintf(what, sizeof what, "residual add + layernorm, %lld rows%s", (long long)cases[c].rows,
             cases[c].between ? ", x read between" : "");
    expect_kernels(&g, what, 41 + (uint64_t)c, cases[c].want_kernels);
    ar_free(&A);
  }
}

/* The backward's mirror: out = r + dx, dx = layernorm_grad(x, w, dy) read
 * by the add alone, is one kernel (split over the pool at 512 rows); dx
 * read by a second node as well keeps them apart. */
static void test_residual_norm_grad(void) {
  static const struct {
    int64_t rows;
    int shared, want_kernels;
  } cases[] = {{3, 0, 1}, {512, 0, 1}, {512, 1, 3}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    arena A;
    ir_graph g;
    ar_init(&A);
    ir_graph_init(&g, &A, "resnormgrad");
    static const char *const names[4] = {"x", "w", "dy", "r"};
    static const int vec[4] = {0, 1, 0, 0};
    int id[4];
    norm_inputs(&g, cases[c].rows, names, vec, id);
    int x = id[0], w = id[1], dy = id[2], r = id[3];
    char msg[512];
    ir_attr none = {0}, eps = {0};
    eps.f = 1e-5;
    int lg_in[3] = {x, w, dy};
    int dx = ir_add(&g, IR_LAYERNORM_GRAD, lg_in, 3, &eps, L0, msg, sizeof msg);
    int o_in[2] = {dx, r};
    int o = ir_add(&g, IR_ADD, o_in, 2, &none, L0, msg, sizeof msg);
    int t = cases[c].shared ? ir_add(&g, IR_EXP, &dx, 1, &none, L0, msg, sizeof msg) : -1;
    CHECK_MSG(dx >= 0 && o >= 0, "%s", msg);
    ir_add_output(&g, "o", o);
    if (t >= 0) ir_add_output(&g, "t", t);
    char what[80];
    snprintf(what, sizeof what, "layernorm gradient + residual, %lld rows%s", (long long)cases[c].rows,
             cases[c].shared ? ", dx read twice" : "");
    expect_kernels(&g, what, 51 + (uint64_t)c, cases[c].want_kernels);
    ar_free(&A);
  }
}

/* A lone unary_grad is left alone when its dy is not a product it alone
 * reads: a one-step program would gain nothing. */
static void test_grad_lone(void) {
  arena A;
  ir_graph g;
  ar_init(&A);
  ir_graph_init(&g, &A, "glone");
  ir_shape s = {2, {3, 4}};
  int x = ir_add_input(&g, "x", IR_F32, &s, 0, L0), dy = ir_add_input(&g, "dy", IR_F32, &s, 0, L0);
  char msg[512] = "";
  ir_attr gt = {0};
  gt.i = IR_TANH;
  int in[2] = {x, dy};
  ir_add_output(&g, "dx", ir_add(&g, IR_UNARY_GRAD, in, 2, &gt, L0, msg, sizeof msg));
  CHECK_MSG(ps_fuse(&g, msg, sizeof msg) == 0, "%s", msg);
  ar_free(&A);
}

/* An output's fused kernel checks its values as it stores them
 * (cg_output_checked); a run that stores a NaN or an infinity there says so
 * (cg_run_nonfinite) and still succeeds. A non-finite value inside the
 * program that does not reach an output is not reported. */
static void test_finite_check(void) {
  arena A;
  ir_graph g;
  ar_init(&A);
  ir_graph_init(&g, &A, "chk");
  CHECK(lower("input x : f32[3, 37]\n"
              "input s : f32[1]\n"
              "output y = x * s + 1\n"
              "output z = exp(x)\n"
              "output m = tanh(exp(x * s)) + x\n", &g) == 0);
  char msg[512] = "";
  CHECK(ps_fuse(&g, msg, sizeof msg) > 0);
  cg_program *p = cg_compile(&g, NULL, msg, sizeof msg);
  CHECK_MSG(p != NULL, "%s", msg);
  if (!p) {
    ar_free(&A);
    return;
  }
  CHECK(cg_output_checked(p, 0) && !cg_output_checked(p, 1) && cg_output_checked(p, 2));
  float x[3 * 37], y[3 * 37], z[3 * 37], mm[3 * 37];
  void *outs[3] = {y, z, mm};
  for (int i = 0; i < 3 * 37; i++) x[i] = (float)(i % 7) - 3;
  static const struct {
    float s;
    int nan_at, nonfinite;
  } cases[] = {
    {2, -1, 0},     /* all finite */
    {3e38f, -1, 1}, /* x * s overflows in y (whole vectors) */
    {1, 110, 1},    /* one NaN in the last element (the scalar tail) */
    {1e30f, -1, 0}, /* exp(x * s) is inf inside m's program, tanh makes it 1: m is finite */
  };
  for (int c = 0; c < 4; c++) {
    float s = cases[c].s, xs[3 * 37];
    memcpy(xs, x, sizeof xs);
    if (cases[c].nan_at >= 0) xs[cases[c].nan_at] = NAN;
    void *ins[2] = {xs, &s};
    CHECK_MSG(cg_run(p, ins, NULL, outs, NULL, msg, sizeof msg) == 0, "%s", msg);
    CHECK_MSG(cg_run_nonfinite(p) == cases[c].nonfinite, "case %d: nonfinite %d, want %d", c, cg_run_nonfinite(p),
              cases[c].nonfinite);
  }
  cg_free(p);
  ar_free(&A);
}

/* ---- broken programs ---- */

static void test_rules(void) {
  arena A;
  ir_graph g;
  ar_init(&A);
  ir_graph_init(&g, &A, "rules");
  ir_shape s = {2, {2, 3}};
  int x = ir_add_input(&g, "x", IR_F32, &s, 0, L0);
  char msg[256] = "";
  CHECK(ir_add(&g, IR_FUSED, &x, 1, NULL, L0, msg, sizeof msg) < 0);
  CHECK_STR(msg, "fused: the node has no program (fused nodes are made by the fusion pass)");
  int y = ir_add(&g, IR_EXP, &x, 1, NULL, L0, msg, sizeof msg);
  ir_add_output(&g, "y", y);
  ir_fstep st[2] = {{IR_EXP, 1, {0, 0}}, {IR_ADD, 2, {-1, -2}}};
  ir_attr at[2] = {{0}};
  ir_fusion f = {2, st, at};
  ir_node *n = &g.nodes[y];
  n->op = IR_FUSED, n->fusion = &f;
  CHECK(ir_verify(&g, msg, sizeof msg) < 0);
  CHECK_MSG(strstr(msg, "step 1 (add) operand 1 names step 1, which is not an earlier step") != NULL, "%s", msg);
  st[1].arg[1] = 0;
  CHECK_MSG(ir_verify(&g, msg, sizeof msg) == 0, "%s", msg);
  st[0].op = IR_SOFTMAX;
  CHECK(ir_verify(&g, msg, sizeof msg) < 0);
  CHECK_MSG(strstr(msg, "step 0 is not a fusable elementwise op") != NULL, "%s", msg);
  ar_free(&A);
}

/* ---- training steps: fewer kernels and bytes ---- */

static void test_training_costs(void) {
  static const char *const models[] = {"examples/mlp.nn", "examples/cnn.nn", "examples/gpt.nn"};
  for (int i = 0; i < 3; i++) {
    FILE *f = fopen(models[i], "rb");
    CHECK_MSG(f != NULL, "%s", models[i]);
    if (!f) continue;
    char *src = calloc(1, 1 << 16);
    size_t len = fread(src, 1, (1 << 16) - 1, f);
    fclose(f);
    src[len] = '\0';
    arena A;
    ir_graph g;
    ar_init(&A);
    ir_graph_init(&g, &A, models[i]);
    char msg[512] = "";
    int ok = lower(src, &g) == 0;
    ir_train t = g.train;
    tr_settings_defaults(&t);
    g.train = t;
    ok = ok && opt_prepare_training(&g, msg, sizeof msg) == 0 && ad_backward(&g, NULL, 0, 0, msg, sizeof msg) == 0 &&
         opt_append(&g, &t, msg, sizeof msg) == 0;
    CHECK_MSG(ok, "%s: %s", models[i], msg);
    pm_cost before, after;
    pm_options o = {.level = 2, .verify = 1};
    if (ok) CHECK_MSG(pm_run(&g, &o, &before, &after, msg, sizeof msg) == 0, "%s", msg);
    printf("%s training step at -O2: kernels %d -> %d, bytes %lld -> %lld\n", models[i], before.kernels,
           after.kernels, (long long)before.bytes, (long long)after.bytes);
    CHECK(after.kernels < before.kernels && after.bytes < before.bytes);
    free(src);
    ar_free(&A);
  }
}


/* ---- in place (passes/memplan.c) ---- */

/* x -> softmax -> a; b = exp(a) elementwise, a's last reader: b takes a's
 * block. a2 + r where r is a2 reshaped twice (an alias, the same bytes):
 * not in place, since the add reads a2's buffer under another name. */
static void test_inplace(void) {
  arena A;
  ir_graph g;
  ar_init(&A);
  ir_graph_init(&g, &A, "inplace");
  CHECK(lower("input x : f32[4, 4]\n"
              "a = softmax(x)\n"
              "b = exp(a)\n"
              "a2 = softmax(b)\n"
              "r = reshape(reshape(a2, [16]), [4, 4])\n"
              "output y = softmax(a2 + r)\n", &g) == 0);
  int nn = g.nnodes;
  int64_t *bytes = ar_alloc(&A, sizeof(int64_t) * (size_t)nn);
  int *alias = ar_alloc(&A, sizeof(int) * (size_t)nn);
  char *inplace = ar_alloc(&A, (size_t)nn);
  for (int i = 0; i < nn; i++) {
    const ir_node *n = &g.nodes[i];
    alias[i] = n->op == IR_RESHAPE ? n->in[0] : -1;
    bytes[i] = ir_ops[n->op].cat == IR_CAT_LEAF || alias[i] >= 0 ? 0 : ir_numel(&n->shape) * 4;
    inplace[i] = n->op == IR_EXP || n->op == IR_ADD;
  }
  mp_plan with, without;
  mp_plan_graph_at(&g, &A, bytes, NULL, NULL, alias, NULL, inplace, &with);
  mp_plan_graph_at(&g, &A, bytes, NULL, NULL, alias, NULL, NULL, &without);
  int a = g.nodes[2].op == IR_SOFTMAX ? 1 : -1, b = 2;
  for (int i = 0; i < nn; i++)
    if (g.nodes[i].op == IR_EXP) b = i, a = g.nodes[i].in[0];
  CHECK(a >= 0 && with.offset[b] == with.offset[a]);
  CHECK(with.inplace == 1 && without.inplace == 0);
  CHECK(with.arena_bytes <= without.arena_bytes);
  printf("in place: peak %lld -> %lld bytes\n", (long long)without.arena_bytes, (long long)with.arena_bytes);
  ar_free(&A);
}

int main(int argc, char **argv) {
  (void)argc, (void)argv;
  test_rewrite();
  test_unchanged();
  test_rules();
  test_random();
  test_epilogue();
  test_bias_epilogue();
  test_grad_epilogue();
  test_grad_lone();
  test_saved_link();
  test_siblings();
  test_siblings_apart();
  test_finite_check();
  test_training_costs();
  test_inplace();
  test_residual_norm();
  test_residual_norm_grad();
  return TEST_REPORT();
}

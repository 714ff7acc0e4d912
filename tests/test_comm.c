/* test_comm.c -- the collectives (allreduce, reduce_scatter, all_gather) and
 * passes/comm.c without MPI: a fake communicator stands for rank 0 of a job
 * of 2 whose other rank holds every value plus 100 (so each result says
 * which rank's values went where, and in what order they were added).
 *
 * 1. Shape rules: results and the refusals.
 * 2. The kernels on the interpreter (f64 and f32) and the LLVM backend
 *    against the closed form; a program compiled for 2 ranks run with no
 *    communicator (a job of 1) is refused on both backends.
 * 3. The pass: a training step compiled for 2 ranks averages every
 *    gradient through allreduce buckets (a smaller bucket size gives more
 *    of them); with a "mirror" communicator (the other rank holds the same
 *    values) its update equals the one-rank step's bit for bit. Each
 *    bucket only starts (allreduce k = 1) right after its last gradient and
 *    a comm_wait follows the backward pass; with overlap hooks (start, wait,
 *    progress) the step gives the same bits; the loss is averaged in the
 *    first bucket (COMM_LOSS_OUT); each bucket's largest gradient first.
 * 4. --zero1: reduce_scatter / all_gather per parameter, slice-sized state.
 * 5. send / recv (pipeline stages): shape rules, and the kernels on the
 *    interpreter and LLVM with a fake peer that answers what it was sent
 *    plus 100; without a peer both backends refuse the run.
 * The real thing (mpirun, 2 and 4 ranks) is tests/mpi.sh. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/llvm/cg.h"
#include "ir.h"
#include "passes/comm.h"
#include "passes/optimizer.h"
#include "passes/passes.h"
#include "rt/lathe_rt.h"
#include "test.h"

static const ir_loc L0 = {0};
static double other_add = 100; /* the other rank's value: mine + other_add */

static int fk_allreduce(void *ctx, void *buf, int64_t n, int f64) {
  (void)ctx;
  for (int64_t i = 0; i < n; i++) {
    if (f64) ((double *)buf)[i] = ((double *)buf)[i] + (((double *)buf)[i] + other_add);
    else ((float *)buf)[i] = ((float *)buf)[i] + (((float *)buf)[i] + (float)other_add);
  }
  return 0;
}

static int fk_reduce_scatter(void *ctx, const void *in, void *out, int64_t m, int f64) {
  (void)ctx;
  for (int64_t i = 0; i < m; i++) { /* rank 0's slice: the first m */
    if (f64) ((double *)out)[i] = ((const double *)in)[i] + (((const double *)in)[i] + other_add);
    else ((float *)out)[i] = ((const float *)in)[i] + (((const float *)in)[i] + (float)other_add);
  }
  return 0;
}

static int fk_allgather(void *ctx, const void *in, void *out, int64_t m, int f64) {
  (void)ctx;
  for (int64_t i = 0; i < m; i++) {
    if (f64) ((double *)out)[i] = ((const double *)in)[i], ((double *)out)[m + i] = ((const double *)in)[i] + other_add;
    else ((float *)out)[i] = ((const float *)in)[i], ((float *)out)[m + i] = ((const float *)in)[i] + (float)other_add;
  }
  return 0;
}

/* The overlap hooks: start packs the parts (as the MPI layer does: the
 * caller may reuse them at once), the wait adds the other rank's values. */
typedef struct {
  const float *key;
  float *vals;
  int64_t n;
} fk_sum;
static fk_sum fk_started[64];
static int fk_nstarted, fk_progressed;

static int fk_start(void *ctx, const float *key, float *const *in, const int64_t *n, int64_t k) {
  (void)ctx;
  int64_t tot = 0;
  for (int64_t j = 0; j < k; j++) tot += n[j];
  if (fk_nstarted >= 64) return -1;
  fk_sum *f = &fk_started[fk_nstarted++];
  f->key = key, f->n = tot, f->vals = malloc(sizeof(float) * (size_t)tot + 1);
  for (int64_t j = 0, off = 0; f->vals && j < k; off += n[j], j++)
    if (n[j] > 0) memcpy(f->vals + off, in[j], sizeof(float) * (size_t)n[j]);
  return 0;
}

static int fk_wait(void *ctx, const float *key, float *out, int64_t n, float scale) {
  (void)ctx;
  const fk_sum *f = NULL;
  for (int i = 0; i < fk_nstarted; i++)
    if (fk_started[i].key == key && fk_started[i].vals) f = &fk_started[i];
  for (int64_t i = 0; i < n; i++) {
    float v = f && f->n == n ? f->vals[i] : NAN, s = v + (v + (float)other_add);
    out[i] = s * scale;
  }
  return 0;
}

static void fk_free(void) {
  for (int i = 0; i < fk_nstarted; i++) free(fk_started[i].vals), fk_started[i].vals = NULL;
  fk_nstarted = 0;
}

static void fk_progress(void *ctx) { (void)ctx, fk_progressed++; }

static void install_fake_async(double add) {
  fk_free();
  other_add = add, fk_progressed = 0;
  lathe_rt_comm c = {.rank = 0, .size = 2, .allreduce = fk_allreduce, .reduce_scatter = fk_reduce_scatter,
                     .allgather = fk_allgather, .start = fk_start, .wait = fk_wait, .progress = fk_progress};
  lathe_rt_comm_install(&c);
}

static void install_fake(double add) {
  other_add = add;
  lathe_rt_comm c = {.rank = 0, .size = 2, .allreduce = fk_allreduce, .reduce_scatter = fk_reduce_scatter,
                     .allgather = fk_allgather};
  lathe_rt_comm_install(&c);
}

static int input(ir_graph *g, const char *name, int rank, const int64_t *d) {
  ir_shape s = {.rank = rank};
  for (int i = 0; i < rank; i++) s.d[i] = d[i];
  return ir_add_input(g, name, IR_F32, &s, 0, L0);
}

/* ---- 1. shape rules ---- */

static void test_shapes(void) {
  arena A;
  ar_init(&A);
  ir_graph g;
  ir_graph_init(&g, &A, "t");
  char msg[256];
  int a = input(&g, "a", 2, (int64_t[]){2, 3}), b = input(&g, "b", 1, (int64_t[]){4});
  int c = input(&g, "c", 1, (int64_t[]){6});
  ir_attr at = {0};
  at.n = 2, at.f = 0.5;
  int ar = ir_add(&g, IR_ALLREDUCE, (int[]){a, b}, 2, &at, L0, msg, sizeof msg);
  CHECK(ar >= 0 && g.nodes[ar].shape.rank == 1 && g.nodes[ar].shape.d[0] == 10);
  int rs = ir_add(&g, IR_REDUCE_SCATTER, &c, 1, &at, L0, msg, sizeof msg);
  CHECK(rs >= 0 && g.nodes[rs].shape.d[0] == 3);
  int ag = ir_add(&g, IR_ALL_GATHER, &c, 1, &at, L0, msg, sizeof msg);
  CHECK(ag >= 0 && g.nodes[ag].shape.d[0] == 12);
  at.n = 4;
  CHECK(ir_add(&g, IR_REDUCE_SCATTER, &c, 1, &at, L0, msg, sizeof msg) < 0);
  CHECK_STR(msg, "reduce_scatter: input must be f32[m * 4] (a multiple of the ranks), got [6]");
  CHECK(ir_add(&g, IR_ALL_GATHER, &a, 1, &at, L0, msg, sizeof msg) < 0);
  CHECK_STR(msg, "all_gather: input must be f32[m], got [2, 3]");
  at.n = 0;
  CHECK(ir_add(&g, IR_ALLREDUCE, &a, 1, &at, L0, msg, sizeof msg) < 0);
  CHECK_STR(msg, "allreduce: ranks (n) must be in 1..1048576, got 0");
  ar_free(&A);
}

/* ---- 2. kernels ---- */

typedef struct {
  arena A;
  ir_graph g;
  double in[4][8];
} kgraph;

static void build_kernels(kgraph *k) {
  ar_init(&k->A);
  ir_graph_init(&k->g, &k->A, "comm");
  ir_graph *g = &k->g;
  char msg[256];
  int a = input(g, "a", 2, (int64_t[]){2, 3}), b = input(g, "b", 1, (int64_t[]){4});
  int c = input(g, "c", 1, (int64_t[]){6}), d = input(g, "d", 1, (int64_t[]){3});
  ir_attr at = {0};
  at.n = 2, at.f = 0.5;
  ir_add_output(g, "ar", ir_add(g, IR_ALLREDUCE, (int[]){a, b}, 2, &at, L0, msg, sizeof msg));
  at.f = 0.25;
  ir_add_output(g, "rs", ir_add(g, IR_REDUCE_SCATTER, &c, 1, &at, L0, msg, sizeof msg));
  ir_add_output(g, "ag", ir_add(g, IR_ALL_GATHER, &d, 1, &at, L0, msg, sizeof msg));
  for (int i = 0; i < 4; i++)
    for (int e = 0; e < 8; e++) k->in[i][e] = (double)(float)(0.25 * (e + 1) - i);
}

/* the closed form: output o's element e (with other_add = 100) */
static double want(const kgraph *k, int o, int e) {
  if (o == 0) { /* a (6) then b (4) */
    double x = e < 6 ? k->in[0][e] : k->in[1][e - 6];
    return (x + (x + 100)) * 0.5;
  }
  if (o == 1) return (k->in[2][e] + (k->in[2][e] + 100)) * 0.25;
  return e < 3 ? k->in[3][e] : k->in[3][e - 3] + 100;
}

static int run_interp(kgraph *k, ir_interp_mode mode, double **out, char *msg, size_t mn) {
  ir_graph *g = &k->g;
  double **v = calloc((size_t)g->nnodes, sizeof *v);
  for (int i = 0; i < g->ninputs; i++) v[g->inputs[i].node] = k->in[i];
  int rc = ir_interp(g, mode, v, msg, mn);
  for (int o = 0; rc == 0 && o < g->noutputs; o++) {
    int64_t n = ir_numel(&g->nodes[g->outputs[o].node].shape);
    out[o] = malloc(sizeof(double) * (size_t)n);
    memcpy(out[o], v[g->outputs[o].node], sizeof(double) * (size_t)n);
  }
  if (rc == 0) ir_interp_release(g, v);
  free(v);
  return rc;
}

static int run_llvm(kgraph *k, double **out, char *msg, size_t mn) {
  ir_graph *g = &k->g;
  cg_program *p = cg_compile(g, NULL, msg, mn);
  if (!p) return -1;
  float fin[4][8], fout[3][16];
  void *ins[4], *outs[3];
  for (int i = 0; i < 4; i++) {
    for (int e = 0; e < 8; e++) fin[i][e] = (float)k->in[i][e];
    ins[i] = fin[i];
  }
  for (int o = 0; o < 3; o++) outs[o] = fout[o];
  int rc = cg_run(p, ins, NULL, outs, NULL, msg, mn);
  for (int o = 0; rc == 0 && o < 3; o++) {
    out[o] = malloc(sizeof(double) * 16);
    for (int e = 0; e < 16; e++) out[o][e] = fout[o][e];
  }
  cg_free(p);
  return rc;
}

static void check_outputs(kgraph *k, double **out, const char *what) {
  static const int len[3] = {10, 3, 6};
  for (int o = 0; o < 3; o++) {
    double worst = 0;
    for (int e = 0; e < len[o]; e++) worst = fmax(worst, fabs(out[o][e] - want(k, o, e)));
    CHECK_MSG(worst <= 1e-4, "%s: output %s off by %g", what, k->g.outputs[o].name, worst);
    free(out[o]);
  }
}

static void test_kernels(void) {
  kgraph k;
  build_kernels(&k);
  char msg[512];
  double *out[3];
  install_fake(100);
  CHECK_MSG(run_interp(&k, IR_INTERP_F64, out, msg, sizeof msg) == 0, "%s", msg);
  check_outputs(&k, out, "interp f64");
  CHECK_MSG(run_interp(&k, IR_INTERP_F32, out, msg, sizeof msg) == 0, "%s", msg);
  check_outputs(&k, out, "interp f32");
  CHECK_MSG(run_llvm(&k, out, msg, sizeof msg) == 0, "%s", msg);
  check_outputs(&k, out, "llvm");
  /* no communicator: a job of one rank, which the program was not compiled for */
  lathe_rt_comm_install(NULL);
  CHECK(run_interp(&k, IR_INTERP_F64, out, msg, sizeof msg) != 0);
  CHECK_MSG(strstr(msg, "compiled for 2 ranks, running in a job of 1") != NULL, "%s", msg);
  CHECK(run_llvm(&k, out, msg, sizeof msg) != 0);
  CHECK_MSG(strstr(msg, "another number of ranks") != NULL, "%s", msg);
  ar_free(&k.A);
}

/* ---- 3. the pass ---- */

/* A two-layer step: y = sum(relu(x W1 + b1) W2 + b2), adam. */
static int build_step_t(ir_graph *g, arena *A, int64_t ranks, int64_t bucket, int zero1, char *msg, size_t mn);
static int build_step(ir_graph *g, arena *A, int64_t ranks, int64_t bucket, char *msg, size_t mn) {
  return build_step_t(g, A, ranks, bucket, 0, msg, mn);
}

static int build_step_t(ir_graph *g, arena *A, int64_t ranks, int64_t bucket, int zero1, char *msg, size_t mn) {
  ir_graph_init(g, A, "mlp");
  int x = input(g, "x", 2, (int64_t[]){4, 5});
  ir_shape s1 = {.rank = 2, .d = {5, 7}}, sb1 = {.rank = 1, .d = {7}}, s2 = {.rank = 2, .d = {7, 3}},
           sb2 = {.rank = 1, .d = {3}};
  int w1 = ir_add_param(g, "w1", IR_F32, &s1, IR_INIT_NORMAL, 0, 0, 0, L0);
  int b1 = ir_add_param(g, "b1", IR_F32, &sb1, IR_INIT_NORMAL, 0, 0, 0, L0);
  int w2 = ir_add_param(g, "w2", IR_F32, &s2, IR_INIT_NORMAL, 0, 0, 0, L0);
  int b2 = ir_add_param(g, "b2", IR_F32, &sb2, IR_INIT_NORMAL, 0, 0, 0, L0);
  int h = ir_add(g, IR_MATMUL, (int[]){x, w1}, 2, NULL, L0, msg, mn);
  h = ir_add(g, IR_ADD, (int[]){h, b1}, 2, NULL, L0, msg, mn);
  h = ir_add(g, IR_RELU, &h, 1, NULL, L0, msg, mn);
  h = ir_add(g, IR_MATMUL, (int[]){h, w2}, 2, NULL, L0, msg, mn);
  h = ir_add(g, IR_ADD, (int[]){h, b2}, 2, NULL, L0, msg, mn);
  ir_attr all = {0};
  all.axis = -1;
  g->loss = ir_add(g, IR_SUM, &h, 1, &all, L0, msg, mn);
  ir_train t;
  memset(&t, 0, sizeof t);
  t.present = 1, t.opt = IR_OPT_ADAM, t.lr = 0.1, t.beta1 = 0.9, t.beta2 = 0.999, t.eps = 1e-8;
  t.ranks = ranks, t.bucket_bytes = bucket, t.zero1 = zero1, t.rank = zero1 ? 1 : 0;
  if (g->loss < 0 || ad_backward(g, NULL, 0, 0, msg, mn) || opt_append(g, &t, msg, mn)) return -1;
  return 0;
}

static int count_op(const ir_graph *g, int op) {
  int n = 0;
  for (int i = 0; i < g->nnodes; i++) n += g->nodes[i].op == op;
  return n;
}

/* One step on the LLVM backend: every "new.X" output into got (concatenated). */
static int step_llvm(ir_graph *g, float *got, int64_t *ngot, char *msg, size_t mn) {
  cg_program *p = cg_compile(g, NULL, msg, mn);
  if (!p) return -1;
  void *ins[16] = {0}, *ps[32] = {0}, *outs[32] = {0};
  for (int i = 0; i < g->ninputs; i++) {
    int64_t n = ir_numel(&g->inputs[i].shape);
    float *b = calloc((size_t)n + 1, 4);
    const char *nm = g->inputs[i].name;
    for (int64_t e = 0; e < n; e++)
      b[e] = !strcmp(nm, "x") ? (float)sin(0.7 * (double)e) : !strcmp(nm, OPT_IN_LR) ? 0.1f : 0.1f; /* bc1, bc2 at step 1 */
    if (!strcmp(nm, OPT_IN_BC2)) b[0] = 0.001f;
    ins[i] = b;
  }
  for (int q = 0; q < g->nparams; q++) {
    int64_t n = ir_numel(&g->params[q].shape);
    float *b = calloc((size_t)n + 1, 4);
    if (!g->params[q].state) ir_param_init_values(&g->params[q], 3, b);
    ps[q] = b;
  }
  for (int o = 0; o < g->noutputs; o++) outs[o] = calloc((size_t)ir_numel(&g->nodes[g->outputs[o].node].shape) + 1, 4);
  int rc = cg_run(p, ins, ps, outs, NULL, msg, mn);
  *ngot = 0;
  for (int o = 0; rc == 0 && o < g->noutputs; o++) {
    if (strncmp(g->outputs[o].name, OPT_NEW_PREFIX, strlen(OPT_NEW_PREFIX))) continue;
    int64_t n = ir_numel(&g->nodes[g->outputs[o].node].shape);
    memcpy(got + *ngot, outs[o], (size_t)n * 4);
    *ngot += n;
  }
  for (int i = 0; i < g->ninputs; i++) free(ins[i]);
  for (int q = 0; q < g->nparams; q++) free(ps[q]);
  for (int o = 0; o < g->noutputs; o++) free(outs[o]);
  cg_free(p);
  return rc;
}

/* Each bucket's allreduce only starts (k = 1) and comes right after its
 * last gradient (nothing but other starts between them), its one
 * comm_wait after the whole backward pass (after the last matmul); the
 * first start comes before that matmul, so the backward overlaps it. */
static void check_overlap(const ir_graph *g, int overlaps) {
  int last_mm = -1, first_start = -1;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == IR_MATMUL) last_mm = i;
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    if (n->op == IR_COMM_WAIT) CHECK(g->nodes[n->in[0]].op == IR_ALLREDUCE && i > last_mm);
    if (n->op != IR_ALLREDUCE) continue;
    CHECK(n->attr.k == 1);
    if (first_start < 0) first_start = i;
    int anchor = -1, waits = 0;
    for (int j = 0; j < n->nin; j++) anchor = n->in[j] > anchor ? n->in[j] : anchor;
    for (int j = anchor + 1; j < i; j++) CHECK(g->nodes[j].op == IR_ALLREDUCE);
    for (int j = i + 1; j < g->nnodes; j++) waits += g->nodes[j].op == IR_COMM_WAIT && g->nodes[j].in[0] == i;
    CHECK(waits == 1);
  }
  CHECK(first_start >= 0 && (!overlaps || first_start < last_mm));
}

/* Each bucket's largest gradient comes first, so that its slice of the
 * sum (offset 0) is an alias of the sum rather than a copy. */
static void check_largest_first(const ir_graph *g) {
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    if (n->op != IR_ALLREDUCE) continue;
    for (int j = 1; j < n->nin; j++)
      CHECK_MSG(ir_numel(&g->nodes[n->in[0]].shape) >= ir_numel(&g->nodes[n->in[j]].shape),
                "bucket %d: operand %d is larger than the first", i, j);
  }
}

static void test_pass(void) {
  char msg[512];
  arena A1, A2, A3;
  ar_init(&A1), ar_init(&A2), ar_init(&A3);
  ir_graph one, two, small;
  CHECK_MSG(build_step(&one, &A1, 1, 0, msg, sizeof msg) == 0, "%s", msg);
  CHECK_MSG(build_step(&two, &A2, 2, 0, msg, sizeof msg) == 0, "%s", msg);
  CHECK_MSG(build_step(&small, &A3, 2, 64, msg, sizeof msg) == 0, "%s", msg);
  CHECK(count_op(&one, IR_ALLREDUCE) == 0);
  CHECK(count_op(&two, IR_ALLREDUCE) == 1);   /* 4 gradients, far below 1 MiB: one bucket */
  CHECK(count_op(&small, IR_ALLREDUCE) == 4); /* 64 bytes: every gradient its own bucket */
  CHECK(count_op(&small, IR_COMM_WAIT) == 4);
  check_overlap(&small, 1);
  check_overlap(&two, 0); /* one bucket: it holds the last gradient too */
  check_largest_first(&two); /* w1 (35 values) first, though the backward finishes b2 and w2 before it */
  CHECK(ir_find_output(&two, COMM_LOSS_OUT) >= 0 && ir_find_output(&one, COMM_LOSS_OUT) < 0);
  static float a[4096], b[4096];
  int64_t na = 0, nb = 0;
  install_fake(0); /* the mirror: the other rank holds the same gradients */
  CHECK_MSG(step_llvm(&two, b, &nb, msg, sizeof msg) == 0, "%s", msg);
  CHECK_MSG(step_llvm(&small, a, &na, msg, sizeof msg) == 0, "%s", msg);
  CHECK(na == nb && memcmp(a, b, (size_t)na * 4) == 0);
  /* overlapped: 4 sums started, the products between them polled, the same bits */
  install_fake_async(0);
  CHECK_MSG(step_llvm(&small, a, &na, msg, sizeof msg) == 0, "%s", msg);
  CHECK_MSG(fk_nstarted == 4, "%d started", fk_nstarted);
  CHECK(na == nb && memcmp(a, b, (size_t)na * 4) == 0);
  fk_free();
  lathe_rt_comm_install(NULL);
  CHECK_MSG(step_llvm(&one, a, &na, msg, sizeof msg) == 0, "%s", msg);
  CHECK(na == nb && na > 0 && memcmp(a, b, (size_t)na * 4) == 0);
  ar_free(&A1), ar_free(&A2), ar_free(&A3);
}

/* --zero1 on rank 1 of 2: every gradient reduce-scattered, every updated
 * slice all-gathered, Adam's moments sized as the rank's slice (7 values of
 * b1 -> 4 each, the pad included; w1's 35 -> 18) and marked with their
 * whole shape and offset; no allreduce buckets. Runs on the LLVM backend. */
static void test_zero1(void) {
  char msg[512];
  arena A;
  ar_init(&A);
  ir_graph g;
  CHECK_MSG(build_step_t(&g, &A, 2, 0, 1, msg, sizeof msg) == 0, "%s", msg);
  CHECK(count_op(&g, IR_REDUCE_SCATTER) == 4 && count_op(&g, IR_ALL_GATHER) == 4);
  CHECK(count_op(&g, IR_ALLREDUCE) == 0);
  int p = ir_find_param(&g, "opt.exp_avg.b1"), q = ir_find_param(&g, "opt.exp_avg_sq.w1");
  CHECK(p >= 0 && q >= 0);
  if (p >= 0 && q >= 0) {
    CHECK(g.params[p].shape.rank == 1 && g.params[p].shape.d[0] == 4 && g.params[p].shard_off == 4);
    CHECK(g.params[p].full.rank == 1 && g.params[p].full.d[0] == 7);
    CHECK(g.params[q].shape.d[0] == 18 && g.params[q].shard_off == 18 && g.params[q].full.rank == 2);
  }
  CHECK(g.params[ir_find_param(&g, "w1")].full.rank == 0); /* the weights stay whole */
  static float a[4096];
  int64_t na = 0;
  install_fake(0);
  CHECK_MSG(step_llvm(&g, a, &na, msg, sizeof msg) == 0, "%s", msg);
  lathe_rt_comm_install(NULL);
  ar_free(&A);
}

/* ---- 5. point to point ---- */

static float p2p_box[16];

static int fk_send(void *ctx, const void *buf, int64_t bytes, int peer) {
  (void)ctx;
  if (peer != 1 || bytes != (int64_t)sizeof(float) * 6) return -1;
  memcpy(p2p_box, buf, (size_t)bytes);
  return 0;
}

static int fk_recv(void *ctx, void *buf, int64_t bytes, int peer) {
  (void)ctx;
  if (peer != 1 || bytes != (int64_t)sizeof(float) * 6) return -1;
  for (int e = 0; e < 6; e++) ((float *)buf)[e] = p2p_box[e] + 100;
  return 0;
}

static void test_p2p(void) {
  kgraph k;
  ar_init(&k.A);
  ir_graph_init(&k.g, &k.A, "p2p");
  ir_graph *g = &k.g;
  char msg[512];
  int a = input(g, "a", 2, (int64_t[]){2, 3});
  ir_attr at = {0};
  at.n = 1;
  int snd = ir_add(g, IR_SEND, &a, 1, &at, L0, msg, sizeof msg);
  CHECK(snd >= 0 && ir_shape_eq(&g->nodes[snd].shape, &g->nodes[a].shape));
  at.nlist = 2, at.list[0] = 2, at.list[1] = 3;
  int rcv = ir_add(g, IR_RECV, NULL, 0, &at, L0, msg, sizeof msg);
  CHECK(rcv >= 0 && g->nodes[rcv].shape.rank == 2 && g->nodes[rcv].shape.d[1] == 3);
  ir_attr bad = at;
  bad.n = -1;
  CHECK(ir_add(g, IR_RECV, NULL, 0, &bad, L0, msg, sizeof msg) < 0);
  CHECK_STR(msg, "recv: the peer rank (n) must be in 0..1048575, got -1");
  bad = at, bad.list[1] = 0;
  CHECK(ir_add(g, IR_RECV, NULL, 0, &bad, L0, msg, sizeof msg) < 0);
  CHECK_STR(msg, "recv: dimension 1 is 0");
  ir_add_output(g, "sent", snd);
  /* the recv reads after the send (an input of the sum orders them), as a stage's program does */
  int sum = ir_add(g, IR_ADD, (int[]){rcv, snd}, 2, NULL, L0, msg, sizeof msg);
  ir_add_output(g, "back", sum);
  for (int e = 0; e < 8; e++) k.in[0][e] = 0.5 * e - 1;
  lathe_rt_comm c = {.rank = 0, .size = 2, .allreduce = fk_allreduce, .send = fk_send, .recv = fk_recv};
  lathe_rt_comm_install(&c);
  for (int mode = 0; mode < 3; mode++) {
    double *out[3] = {0};
    memset(p2p_box, 0, sizeof p2p_box);
    int rc = mode < 2 ? run_interp(&k, mode ? IR_INTERP_F32 : IR_INTERP_F64, out, msg, sizeof msg)
                      : run_llvm(&k, out, msg, sizeof msg);
    CHECK_MSG(rc == 0, "%s", msg);
    double worst = 0;
    for (int e = 0; rc == 0 && e < 6; e++) {
      worst = fmax(worst, fabs(out[0][e] - k.in[0][e]) + fabs(p2p_box[e] - k.in[0][e]));
      worst = fmax(worst, fabs(out[1][e] - (2 * k.in[0][e] + 100)));
    }
    CHECK_MSG(worst <= 1e-5, "send/recv mode %d: off by %g", mode, worst);
    free(out[0]), free(out[1]), free(out[2]);
  }
  lathe_rt_comm_install(NULL); /* no peer: refused, not a hang */
  double *out[3] = {0};
  CHECK(run_interp(&k, IR_INTERP_F64, out, msg, sizeof msg) != 0);
  CHECK_MSG(strstr(msg, "no rank 1 to") != NULL, "%s", msg);
  CHECK(run_llvm(&k, out, msg, sizeof msg) != 0);
  CHECK_MSG(strstr(msg, "send/recv names a rank it lacks") != NULL, "%s", msg);
  ar_free(&k.A);
}

int main(void) {
  test_p2p();
  test_shapes();
  test_zero1();
  test_kernels();
  test_pass();
  return TEST_REPORT();
}

/* quantize.c -- the quantization pass: every matmul(x, W) whose right
 * operand is a weight W [K, N] read only by such products becomes
 * qmatmul(x, W's stored tensors) in the mode the program asked for
 * (g->quant); W leaves the parameter table and its quantized tensors join
 * it, named W's name + a suffix per mode (layouts: rt/rt_quant.h; `lathe
 * quantize` writes them). What stays f32 and why is qz_keep_reason's, so
 * the file and the compiled graph agree on every layer. */
#include <string.h>

#include "passes/passes.h"
#include "rt/lathe_rt.h"
#include "rt/rt_quant.h"

static const struct {
  const char *name;
  const char *suffix[3];
} modes[] = {
  [LATHE_RT_Q_W8] = {"w8", {".w8", ".w8s", NULL}},
  [LATHE_RT_Q_W4] = {"w4", {".w4", ".w4s", NULL}},
  [LATHE_RT_Q_DQ8] = {"int8-dynamic", {".dq8", ".dq8s", ".dq8c"}},
  [LATHE_RT_Q_BF16] = {"bf16", {".bf16", NULL, NULL}},
  [LATHE_RT_Q_F16] = {"f16", {".f16", NULL, NULL}},
  [LATHE_RT_Q_S8] = {"int8", {".i8", ".i8s", ".i8c"}},
};
enum { NMODES = sizeof modes / sizeof modes[0] };

int qz_mode_parse(const char *name) {
  for (int m = 1; name && m < NMODES; m++)
    if (!strcmp(modes[m].name, name)) return m;
  return -1;
}
const char *qz_mode_name(int mode) { return mode > 0 && mode < NMODES ? modes[mode].name : "none"; }
const char *qz_suffix(int mode, int k) { return mode > 0 && mode < NMODES && k >= 0 && k < 3 ? modes[mode].suffix[k] : NULL; }

const char *qz_keep_reason(const ir_graph *g, int param, int mode) {
  const ir_param *p = &g->params[param];
  if (p->state || p->buffer || p->stored) return "not a weight";
  if (p->dtype == IR_F32 && (p->shape.rank == 3 || p->shape.rank == 4)) return qz_conv_keep_reason(g, param, mode);
  if (p->dtype != IR_F32 || p->shape.rank != 2) return "not an f32 matrix";
  int64_t K = p->shape.d[0];
  int readers = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    for (int k = 0; k < n->nin; k++) {
      if (n->in[k] != p->node) continue;
      if (n->op != IR_MATMUL || k != 1 || n->attr.i != 0) return "read by something other than a dense product";
      const ir_node *x = &g->nodes[n->in[0]];
      if (x->dtype != IR_F32 || x->shape.rank < 1) return "its product's input is not f32";
      readers++;
    }
  }
  for (int o = 0; o < g->noutputs; o++)
    if (g->outputs[o].node == p->node) return "an output";
  if (!readers) return "read by no product";
  if ((mode == LATHE_RT_Q_W8 || mode == LATHE_RT_Q_W4) && K % RT_Q_GROUP)
    return "its input width is not a multiple of 32 (the group size)";
  if ((mode == LATHE_RT_Q_DQ8 || mode == LATHE_RT_Q_S8) && K > RT_Q_MAXK) return "its input width is above 65536";
  return NULL;
}

/* The kernel of a static int8 product of M rows on a CPU whose best is
 * isa. Without SIMD integer dot products (neither VNNI nor AVX2: the scalar
 * kernel) int8 is many times slower than f32 at every batch, so the product
 * computes in f32 on the int8 weights (LATHE_RT_ISA_F32; `lathe quantize`
 * says so). With AVX2 or VNNI the integer kernels beat f32 here even at one
 * row (docs/quantize.md has the numbers). */
int64_t qz_s8_kernel(int64_t isa) {
  return isa == LATHE_RT_ISA_SCALAR ? LATHE_RT_ISA_F32 : isa;
}

/* the stored tensors' dtypes and shapes for W [K, N] */
static void stored_tensor(int mode, int k, int64_t K, int64_t N, ir_dtype *t, ir_shape *s) {
  int i8 = mode == LATHE_RT_Q_DQ8 || mode == LATHE_RT_Q_S8, grouped = mode == LATHE_RT_Q_W8 || mode == LATHE_RT_Q_W4;
  s->rank = 2, s->d[0] = (k == 0 && i8) || grouped ? rt_q_npad(N) : N; /* w8, w4: blocks of 16 columns */
  if (k == 0) {
    *t = mode == LATHE_RT_Q_W4 ? IR_U8 : mode == LATHE_RT_Q_BF16 ? IR_BF16 : mode == LATHE_RT_Q_F16 ? IR_F16 : IR_I8;
    s->d[1] = mode == LATHE_RT_Q_W4 ? K / 2 : i8 ? rt_q_kpad(K) : K;
  } else if (i8) { /* static int8: the input's scale after the columns' */
    *t = k == 1 ? IR_F32 : IR_I32, s->rank = 1;
    s->d[0] = N + (k == 1 && mode == LATHE_RT_Q_S8);
  } else {
    *t = IR_F32, s->d[1] = K / RT_Q_GROUP;
  }
}

/* Drop params[i] from the table (its PARAM node goes with drop[]). */
static void remove_param(ir_graph *g, int i) {
  for (int j = i + 1; j < g->nparams; j++) g->nodes[g->params[j].node].attr.i = j - 1;
  memmove(&g->params[i], &g->params[i + 1], sizeof *g->params * (size_t)(g->nparams - i - 1));
  g->nparams--;
}

/* ---- static int8's epilogue: qmatmul -> add(bias [N]) [-> relu] ---- */

/* every reader of node v (inputs, outputs, the loss) reads node f instead */
void qz_take_readers(ir_graph *g, int v, int f) {
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i].nin; k++)
      if (g->nodes[i].in[k] == v) g->nodes[i].in[k] = f;
  for (int o = 0; o < g->noutputs; o++)
    if (g->outputs[o].node == v) g->outputs[o].node = f;
  if (g->loss == v) g->loss = f;
}

/* the one reader of node v (-1: none, several, or an output or the loss) */
int qz_sole_reader(const ir_graph *g, int v) {
  int r = -1;
  for (int o = 0; o < g->noutputs; o++)
    if (g->outputs[o].node == v) return -1;
  if (g->loss == v) return -1;
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i].nin; k++)
      if (g->nodes[i].in[k] == v) {
        if (r >= 0 && r != i) return -1;
        r = i;
      }
  return r;
}

/* the bias operand of add node a reading q: an f32 [N] parameter, else -1 */
static int bias_of(const ir_graph *g, const ir_node *a, int q, int64_t N) {
  if (a->op != IR_ADD || a->nin != 2) return -1;
  int b = a->in[0] == q ? a->in[1] : a->in[1] == q ? a->in[0] : -1;
  const ir_node *bn = b >= 0 ? &g->nodes[b] : NULL;
  return bn && b != q && bn->op == IR_PARAM && bn->dtype == IR_F32 && bn->shape.rank == 1 && bn->shape.d[0] == N ? b
                                                                                                               : -1;
}

/* the products whose kernels take a bias and a relu: the int8 ones, and
 * bf16 on the bf16 dot products (rt/rt_qbf16.c; its f32 kernels do not) */
static int has_epilogue(const ir_node *n) {
  if (n->op != IR_QMATMUL) return 0;
  if (n->attr.i == LATHE_RT_Q_BF16) return lathe_rt_isa_bf16dot(n->attr.k) && n->nin == 2;
  return (n->attr.i == LATHE_RT_Q_S8 || n->attr.i == LATHE_RT_Q_DQ8) && n->nin == 4;
}

/* Each such product whose only reader adds a bias (and whose sum's only
 * reader is a relu) takes both into its kernel's epilogue: the sums are
 * written once, already biased and rectified. */
static int fold_epilogues(ir_graph *g, char *msg, size_t mn) {
  int n0 = g->nnodes, folded = 0;
  char *drop = ar_alloc(g->A, (size_t)n0 + 1);
  memset(drop, 0, (size_t)n0 + 1);
  for (int q = 0; q < n0; q++) {
    const ir_node *qn = &g->nodes[q];
    if (!has_epilogue(qn)) continue;
    int a = qz_sole_reader(g, q), b = a >= 0 ? bias_of(g, &g->nodes[a], q, qn->attr.n) : -1;
    if (b < 0) continue;
    int r = qz_sole_reader(g, a), relu = r >= 0 && g->nodes[r].op == IR_RELU, last = relu ? r : a;
    int in[5], nin = qn->nin;
    memcpy(in, qn->in, sizeof(int) * (size_t)nin);
    in[nin] = b;
    ir_attr at = qn->attr;
    at.axis = relu;
    int f = ir_add(g, IR_QMATMUL, in, nin + 1, &at, g->nodes[last].loc, msg, mn);
    if (f < 0) return -1;
    qz_take_readers(g, last, f);
    drop[q] = drop[a] = 1;
    if (relu) drop[r] = 1;
    folded++;
  }
  if (!folded) return 0;
  char *all = ar_alloc(g->A, (size_t)g->nnodes + 1);
  memset(all, 0, (size_t)g->nnodes + 1);
  memcpy(all, drop, (size_t)n0);
  return rw_reorder(g, all, msg, mn) ? -1 : folded;
}

/* the rows of a product whose input is x [..., K] */
static int64_t rows_of(const ir_node *x, int64_t K) { return K > 0 ? ir_numel(&x->shape) / K : 0; }

/* One line for the model: the layers kept in f32 (params [0, np) marked
 * from_quant), grouped by reason; the pass manager prints it. */
static void note_kept(ir_graph *g, int np, int mode) {
  const char *note = NULL;
  for (int i = 0; i < np; i++) {
    const char *why = g->params[i].kept_why;
    int first = 1;
    for (int j = 0; j < i && first; j++) first = !g->params[j].from_quant || g->params[j].kept_why != why;
    if (!g->params[i].from_quant || !first) continue;
    const char *names = g->params[i].name;
    for (int j = i + 1; j < np; j++)
      if (g->params[j].from_quant && g->params[j].kept_why == why)
        names = ar_printf(g->A, "%s, %s", names, g->params[j].name);
    note = ar_printf(g->A, "%s%s%s dense %s kept f32: %s", note ? note : "", note ? "; " : "", qz_mode_name(mode),
                     names, why);
  }
  g->quant_note = note;
}

int ps_quantize(ir_graph *g, char *msg, size_t mn) {
  int mode = g->quant;
  if (mode <= 0) return 0;
  if (mode >= NMODES) return ir_fail(msg, mn, "unknown quantization mode %d", mode);
  int n0 = g->nnodes, np0 = g->nparams, changes = 0, kept = 0;
  /* The integer kernel is chosen now, by this CPU's features: part of the
   * node, so programs compiled for different features never share code. */
  int64_t isa = lathe_rt_quant_isa();
  char *qz = ar_alloc(g->A, (size_t)np0 + 1);
  for (int i = 0; i < np0; i++) qz[i] = qz_keep_reason(g, i, mode) == NULL;
  int *repl = ar_alloc(g->A, sizeof(int) * (size_t)(n0 + 1));
  for (int i = 0; i < n0; i++) repl[i] = -1;
  for (int i = 0; i < np0; i++) {
    if (!qz[i]) continue;
    ir_param p = g->params[i];
    int64_t K, N;
    qz_weight_kn(&p, &K, &N);
    int in[4], nin = 1;
    for (int k = 0; k < 3 && qz_suffix(mode, k); k++) {
      ir_dtype t;
      ir_shape s = {0};
      stored_tensor(mode, k, K, N, &t, &s);
      const char *name = ar_printf(g->A, "%s%s", p.name, qz_suffix(mode, k));
      in[nin++] = ir_add_param(g, name, t, &s, IR_INIT_ZEROS, 0, 0, 0, g->nodes[p.node].loc);
      g->params[g->nparams - 1].stored = 1;
    }
    for (int j = 0; j < n0; j++) {
      if (g->nodes[j].op == IR_CONV2D && g->nodes[j].in[1] == p.node) { /* quantize_conv.c */
        if ((repl[j] = qz_conv_node(g, j, in, mode, isa, msg, mn)) < 0) return -1;
        changes++;
        continue;
      }
      if (g->nodes[j].op != IR_MATMUL || g->nodes[j].in[1] != p.node) continue;
      in[0] = g->nodes[j].in[0];
      /* AMX's tiles where this CPU (and Linux) allow them: int8 and bf16 */
      ir_attr at = {.i = mode, .n = N, .k = lathe_rt_amx_isa(mode, mode == LATHE_RT_Q_S8     ? qz_s8_kernel(isa)
                                                                 : mode == LATHE_RT_Q_BF16 ? lathe_rt_bf16_isa(isa)
                                                                                           : isa)};
      const char *slow = qz_slow_reason(mode, at.k, rows_of(&g->nodes[in[0]], K), K);
      if (slow) { /* the matmul stays, on W made f32 at load (runtime/api_quant.c) */
        g->params[i].from_quant = mode, g->params[i].kept_why = slow;
        kept++;
        continue;
      }
      int q = ir_add(g, IR_QMATMUL, in, nin, &at, g->nodes[j].loc, msg, mn);
      if (q < 0) return -1;
      repl[j] = q;
      changes++;
    }
  }
  if (!changes && !kept) return 0;
  /* readers of each product read its qmatmul */
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i].nin; k++) {
      int r = g->nodes[i].in[k];
      if (r < n0 && repl[r] >= 0) g->nodes[i].in[k] = repl[r];
    }
  for (int o = 0; o < g->noutputs; o++)
    if (g->outputs[o].node < n0 && repl[g->outputs[o].node] >= 0) g->outputs[o].node = repl[g->outputs[o].node];
  if (g->loss >= 0 && g->loss < n0 && repl[g->loss] >= 0) g->loss = repl[g->loss];
  char *drop = ar_alloc(g->A, (size_t)g->nnodes + 1);
  for (int j = 0; j < n0; j++) drop[j] = repl[j] >= 0;
  note_kept(g, np0, mode);
  for (int i = np0 - 1; i >= 0; i--)
    if (qz[i] && !g->params[i].from_quant) {
      drop[g->params[i].node] = 1;
      remove_param(g, i);
    }
  if (rw_reorder(g, drop, msg, mn)) return -1;
  if ((mode == LATHE_RT_Q_S8 || mode == LATHE_RT_Q_DQ8 || mode == LATHE_RT_Q_BF16) && fold_epilogues(g, msg, mn) < 0)
    return -1;
  return qz_conv_mode(mode) && qz_conv_fold_relu(g, msg, mn) < 0 ? -1 : changes + kept;
}

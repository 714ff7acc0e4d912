/* cu_render_rows.c -- kernels of one node (and the residual/layernorm
 * pairs), by the head's op: row reductions and normalisations (one block
 * per row, block reductions by warp shuffles), losses, data movement,
 * pools. An op without a row in the table is refused by name. Run-time
 * errors (an id or label out of range) set the program's status word to
 * cu_status_code(node, what); the runtime turns it into a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/conv.h"
#include "codegen/cuda/cu_render.h"

enum { EW = 256 };

/* [outer, len, inner] around axis ax of s (axis < 0: everything is one row). */
void cu_around(const ir_shape *s, int64_t ax, int64_t *outer, int64_t *len, int64_t *inner) {
  *outer = 1, *len = ir_numel(s), *inner = 1;
  if (ax < 0) return;
  for (int d = 0; d < ax; d++) *outer *= s->d[d];
  *len = s->d[ax];
  for (int d = (int)ax + 1; d < s->rank; d++) *inner *= s->d[d];
}

/* Threads for rows of len: a warp for short rows, up to CU_ROW_THREADS. */
unsigned cu_row_threads(int64_t len) {
  unsigned t = 32;
  while (t < CU_ROW_THREADS && (int64_t)t < len) t *= 2;
  return t;
}

/* for each row of [outer, len, inner]: base = the row's first element; the
 * element l is at base + l * inner. */
void cu_rows_open(cu_sb *b, int64_t outer, int64_t len, int64_t inner) {
  cu_sb_printf(b, ") {\n  const long long LEN = %lldLL, INNER = %lldLL;\n  (void)LEN; (void)INNER;\n"
                  "  for (long long row = blockIdx.x; row < %lldLL; row += gridDim.x) {\n"
                  "    long long base = (row / INNER) * LEN * INNER + row %% INNER;\n",
               (long long)len, (long long)inner, (long long)(outer * inner));
}

int cu_finish_rows(cu_rctx *r, int64_t rows, unsigned threads, int nops) {
  cu_sb_printf(&r->b, "  }\n}\n");
  cu_ref ops[CU_MAXOPS];
  cu_refs(r, ops, nops);
  return cu_end(r, cu_blocks(rows, 1), threads, ops, nops);
}

/* Operands 0..nops-1 as a0, a1, ...; those in the bit mask `out` written. */
void cu_params_out(cu_rctx *r, int nops, unsigned out) {
  for (int j = 0; j < nops; j++) {
    char nm[16];
    snprintf(nm, sizeof nm, "a%d", j);
    cu_param(r, nm, cu_opn(r, j), (out >> j) & 1);
  }
}
void cu_params(cu_rctx *r, int nops) { cu_params_out(r, nops, 1); }

int cu_status_param(cu_rctx *r) {
  cu_sb_printf(&r->b, ", int* __restrict__ status");
  return 0;
}

/* ---- softmax family, reductions ---- */

static int r_softmax(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  int as_log = n->op == IR_LOG_SOFTMAX;
  int64_t outer, len, inner;
  cu_around(&n->shape, n->attr.axis, &outer, &len, &inner);
  unsigned t = cu_row_threads(len);
  cu_begin(r, (int)t);
  cu_params(r, 2);
  cu_rows_open(&r->b, outer, len, inner);
  cu_sb_printf(&r->b, "    float mx = -LT_INF, s = 0.f;\n" FOR_L "mx = fmaxf(mx, a1[base + l * INNER]);\n"
                      "    mx = lt_block_reduce(mx, 1);\n" FOR_L "s += expf(a1[base + l * INNER] - mx);\n"
                      "    s = lt_block_reduce(s, 0);\n");
  if (as_log) cu_sb_printf(&r->b, "    float ls = logf(s);\n" FOR_L "a0[base + l * INNER] = a1[base + l * INNER] - mx - ls;\n");
  else cu_sb_printf(&r->b, FOR_L "a0[base + l * INNER] = expf(a1[base + l * INNER] - mx) / s;\n");
  return cu_finish_rows(r, outer * inner, t, 2);
}

static int r_softmax_grad(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  int as_log = n->op == IR_LOG_SOFTMAX_GRAD;
  int64_t outer, len, inner;
  cu_around(&n->shape, n->attr.axis, &outer, &len, &inner);
  unsigned t = cu_row_threads(len);
  cu_begin(r, (int)t);
  cu_params(r, 3); /* y, dy */
  cu_rows_open(&r->b, outer, len, inner);
  cu_sb_printf(&r->b, "    float dot = 0.f;\n");
  if (as_log) cu_sb_printf(&r->b, FOR_L "dot += a2[base + l * INNER];\n");
  else cu_sb_printf(&r->b, FOR_L "dot += a2[base + l * INNER] * a1[base + l * INNER];\n");
  cu_sb_printf(&r->b, "    dot = lt_block_reduce(dot, 0);\n" FOR_L "{\n      long long e = base + l * INNER;\n");
  if (as_log) cu_sb_printf(&r->b, "      a0[e] = a2[e] - expf(a1[e]) * dot;\n    }\n");
  else cu_sb_printf(&r->b, "      a0[e] = a1[e] * (a2[e] - dot);\n    }\n");
  return cu_finish_rows(r, outer * inner, t, 3);
}

static int r_reduce(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0), *x = cu_opn(r, 1);
  if (x->dtype != IR_F32) return cu_unsupported(r, "a reduction of %s", ir_dtype_name(x->dtype));
  int64_t outer, len, inner;
  cu_around(&x->shape, n->attr.axis, &outer, &len, &inner);
  unsigned t = cu_row_threads(len);
  int op = n->op == IR_SUM || n->op == IR_MEAN ? 0 : n->op == IR_MAX ? 2 : 3;
  cu_begin(r, (int)t);
  cu_params(r, 2);
  cu_rows_open(&r->b, outer, len, inner);
  cu_sb_printf(&r->b, "    float acc = %s;\n", op == 0 ? "0.f" : op == 2 ? "-LT_INF" : "LT_INF");
  cu_sb_printf(&r->b, FOR_L "acc = %s;\n", op == 0 ? "acc + a1[base + l * INNER]"
                                          : op == 2 ? "lt_maxn(acc, a1[base + l * INNER])"
                                                    : "lt_minn(acc, a1[base + l * INNER])");
  cu_sb_printf(&r->b, "    acc = lt_block_reduce(acc, %d);\n", op);
  cu_sb_printf(&r->b, "    if (threadIdx.x == 0) a0[row] = acc%s;\n", n->op == IR_MEAN ? " / (float)LEN" : "");
  (void)len;
  return cu_finish_rows(r, outer * inner, t, 2);
}

/* sum_to: each result element sums the input elements broadcast from it:
 * one block per result element, over the reduced axes' index r. */
static int r_sum_to(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0), *x = cu_opn(r, 1);
  const ir_shape *sx = &x->shape, *so = &n->shape;
  int64_t nout = ir_numel(so), nred = nout ? ir_numel(sx) / nout : 0;
  unsigned t = cu_row_threads(nred);
  cu_begin(r, (int)t);
  cu_params(r, 2);
  cu_sb_printf(&r->b, ") {\n  for (long long o = blockIdx.x; o < %lldLL; o += gridDim.x) {\n    float acc = 0.f;\n"
                      "    for (long long q = threadIdx.x; q < %lldLL; q += blockDim.x) {\n      long long i = 0",
               (long long)nout, (long long)nred);
  int64_t stride = 1, dout = 1, dred = 1;
  for (int a = sx->rank - 1, j = so->rank - 1; a >= 0; a--, j--) {
    int64_t od = j >= 0 ? so->d[j] : 1;
    if (od == sx->d[a]) {
      cu_sb_printf(&r->b, " + (o / %lldLL %% %lldLL) * %lldLL", (long long)dout, (long long)od, (long long)stride);
      dout *= od;
    } else {
      cu_sb_printf(&r->b, " + (q / %lldLL %% %lldLL) * %lldLL", (long long)dred, (long long)sx->d[a], (long long)stride);
      dred *= sx->d[a];
    }
    stride *= sx->d[a];
  }
  cu_sb_printf(&r->b, ";\n      acc += a1[i];\n    }\n    acc = lt_block_reduce(acc, 0);\n"
                      "    if (threadIdx.x == 0) a0[o] = acc;\n");
  return cu_finish_rows(r, nout, t, 2);
}

/* ---- layernorm and its gradient; the residual pairs ---- */

/* Mean and 1/std of the row at x (statements; LEN elements, stride 1). */
static void row_stats(cu_sb *b, const char *x, double eps) {
  char e[48];
  cu_sb_printf(b, "    float mean = 0.f, var = 0.f;\n" FOR_L "mean += %s[base + l];\n"
                  "    mean = lt_block_reduce(mean, 0) / (float)LEN;\n"
                  FOR_L "{ float d = %s[base + l] - mean; var += d * d; }\n"
                  "    var = lt_block_reduce(var, 0) / (float)LEN;\n    float inv = 1.f / sqrtf(var + %s);\n",
               x, x, cu_flt(eps, e, sizeof e));
}

static int r_layernorm(cu_rctx *r) {
  int pair = r->k->kind == PL_K_ADD_NORM;
  const ir_node *n = cu_opn(r, 0);
  int64_t d = n->shape.d[n->shape.rank - 1], rows = ir_numel(&n->shape) / d;
  unsigned t = cu_row_threads(d);
  cu_begin(r, (int)t);
  cu_params_out(r, pair ? 6 : 4, pair ? 1u | 32u : 1u); /* y, x, w, b; pair: y, a, b, w, bias, x (stored) */
  cu_rows_open(&r->b, rows, d, 1);
  if (pair) cu_sb_printf(&r->b, FOR_L "a5[base + l] = a1[base + l] + a2[base + l];\n");
  row_stats(&r->b, pair ? "a5" : "a1", r->g->nodes[r->k->head].attr.f);
  if (pair) cu_sb_printf(&r->b, FOR_L "a0[base + l] = (a5[base + l] - mean) * inv * a3[l] + a4[l];\n");
  else cu_sb_printf(&r->b, FOR_L "a0[base + l] = (a1[base + l] - mean) * inv * a2[l] + a3[l];\n");
  return cu_finish_rows(r, rows, t, pair ? 6 : 4);
}

static int r_layernorm_grad(cu_rctx *r) {
  int pair = r->k->kind == PL_K_NORM_GRAD_ADD;
  const ir_node *h = &r->g->nodes[r->k->head], *x = &r->g->nodes[h->in[0]];
  int64_t d = x->shape.d[x->shape.rank - 1], rows = ir_numel(&x->shape) / d;
  unsigned t = cu_row_threads(d);
  if (h->attr.i == 1) { /* dw: each row's statistics into scratch, then a block per column */
    int64_t scr = r->p->buf[r->k->node].scr;
    if (scr < 0) return cu_unsupported(r, "no scratch for the row statistics");
    cu_begin(r, (int)t);
    cu_params(r, 4); /* dw, x, w, dy */
    cu_sb_printf(&r->b, ", float* __restrict__ st");
    cu_rows_open(&r->b, rows, d, 1);
    row_stats(&r->b, "a1", h->attr.f);
    cu_sb_printf(&r->b, "    if (threadIdx.x == 0) { st[2 * row] = mean; st[2 * row + 1] = inv; }\n  }\n}\n");
    cu_ref ops[5];
    cu_refs(r, ops, 4);
    ops[4].node = CU_REF_ARENA, ops[4].off = scr;
    if (cu_end(r, cu_blocks(rows, 1), t, ops, 5)) return -1;
    unsigned t2 = cu_row_threads(rows);
    cu_begin(r, (int)t2);
    cu_params(r, 4);
    cu_sb_printf(&r->b, ", float* __restrict__ st) {\n  for (long long j = blockIdx.x; j < %lldLL; j += gridDim.x) {\n"
                        "    float acc = 0.f;\n    for (long long q = threadIdx.x; q < %lldLL; q += blockDim.x)\n"
                        "      acc += a3[q * %lldLL + j] * (a1[q * %lldLL + j] - st[2 * q]) * st[2 * q + 1];\n"
                        "    acc = lt_block_reduce(acc, 0);\n    if (threadIdx.x == 0) a0[j] = acc;\n  }\n}\n",
                 (long long)d, (long long)rows, (long long)d, (long long)d);
    return cu_end(r, cu_blocks(d, 1), t2, ops, 5);
  }
  cu_begin(r, (int)t);
  cu_params(r, pair ? 5 : 4); /* dx, x, w, dy; pair: + the residual gradient */
  cu_rows_open(&r->b, rows, d, 1);
  row_stats(&r->b, "a1", h->attr.f);
  cu_sb_printf(&r->b, "    float mg = 0.f, mgx = 0.f;\n" FOR_L "{ float g = a3[base + l] * a2[l]; mg += g;"
                      " mgx += g * (a1[base + l] - mean) * inv; }\n"
                      "    mg = lt_block_reduce(mg, 0) / (float)LEN; mgx = lt_block_reduce(mgx, 0) / (float)LEN;\n"
                      FOR_L "a0[base + l] = %sinv * (a3[base + l] * a2[l] - mg - (a1[base + l] - mean) * inv * mgx);\n",
               pair ? "a4[base + l] + " : "");
  return cu_finish_rows(r, rows, t, pair ? 5 : 4);
}

/* ---- losses ---- */

/* The status code of a run-time error at node (what: 0 an id, 1 a label, 2 an index). */
long long cu_code_of(int node, int what) { return 1 + (long long)node * 4 + what; }

/* Cross-entropy in every form the interpreter has (ir/interp_nn.c
 * ik_cross_entropy, torch's): class weights w (operand `wop`, 0: none), an
 * ignore_index (attr k = 1 given, 2 the default -100; the index in attr n), label smoothing ls. Over
 * the counted rows, (1 - ls) w[lab] (lse - x[lab]) + ls / C sum_c w[c]
 * (lse - x[c]), divided by the counted rows' total weight. */
typedef struct {
  int wop;              /* the weight operand, or 0 */
  int has_ignore;
  long long ignore;
  char ls[48], lsc[48]; /* ls and ls / C as literals */
} ce_form;

static ce_form ce_form_of(const ir_node *n, int wop_if_weighted, int weighted, int64_t C) {
  ce_form f = {.wop = weighted ? wop_if_weighted : 0, .has_ignore = n->attr.k != 0, .ignore = (long long)n->attr.n};
  cu_flt(n->attr.f, f.ls, sizeof f.ls);
  cu_flt(n->attr.f / (double)C, f.lsc, sizeof f.lsc);
  return f;
}

/* `W(j)`: class j's weight as an expression (1.f without weights). */
static void ce_w(char *buf, size_t n, const ce_form *f, const char *j) {
  if (f->wop) snprintf(buf, n, "a%d[%s]", f->wop, j);
  else snprintf(buf, n, "1.f");
}

/* Statements that skip row `row` when its label `lab` is the ignore_index,
 * and flag a label that is not a class (then skip it too). */
static void ce_label(cu_sb *b, const ce_form *f, const char *lane0, long long code) {
  cu_sb_printf(b, "    long long lab = (long long)a2[row];\n");
  if (f->has_ignore) cu_sb_printf(b, "    if (lab == %lldLL) IGNORED;\n", f->ignore);
  cu_sb_printf(b, "    if (lab < 0 || lab >= C) { if (%s) lt_fail(status, %lld); continue; }\n", lane0, code);
}

/* The loss: one block; each warp takes rows, the lanes its classes. */
static int r_cross_entropy(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0), *x = cu_opn(r, 1);
  int64_t C = x->shape.d[x->shape.rank - 1], rows = ir_numel(&x->shape) / C;
  ce_form f = ce_form_of(n, 3, n->nin == 3, C);
  char wl[48], wj[48];
  ce_w(wl, sizeof wl, &f, "lab"), ce_w(wj, sizeof wj, &f, "j");
  cu_begin(r, 1024);
  cu_params(r, f.wop ? 4 : 3);
  cu_status_param(r);
  cu_sb_printf(&r->b,
               ") {\n  const long long C = %lldLL, ROWS = %lldLL;\n  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;\n"
               "  float total = 0.f, wsum = 0.f;\n"
               "#define IGNORED continue\n"
               "  for (long long row = warp; row < ROWS; row += blockDim.x >> 5) {\n"
               "    const auto* xr = a1 + row * C;\n",
               (long long)C, (long long)rows);
  ce_label(&r->b, &f, "lane == 0", cu_code_of(r->k->node, 1));
  cu_sb_printf(&r->b,
               "    float mx = -LT_INF, s = 0.f, wx = 0.f, ww = 0.f;\n"
               "    for (long long j = lane; j < C; j += 32) mx = fmaxf(mx, xr[j]);\n    mx = lt_warp_max(mx);\n"
               "    for (long long j = lane; j < C; j += 32) { s += expf(xr[j] - mx); wx += %s * xr[j]; ww += %s; }\n"
               "    s = lt_warp_sum(s); wx = lt_warp_sum(wx); ww = lt_warp_sum(ww);\n    float lse = mx + logf(s);\n"
               "    total += (1.f - %s) * %s * (lse - xr[lab]) + %s * (ww * lse - wx);\n    wsum += %s;\n  }\n"
               "#undef IGNORED\n"
               "  total = lt_block_reduce(lane == 0 ? total : 0.f, 0);\n"
               "  wsum = lt_block_reduce(lane == 0 ? wsum : 0.f, 0);\n"
               "  if (threadIdx.x == 0) a0[0] = total / wsum; // every row ignored: 0 / 0, NaN as torch\n}\n",
               wj, wj, f.ls, wl, f.lsc, wl);
  cu_ref ops[5];
  int nops = f.wop ? 4 : 3;
  cu_refs(r, ops, nops);
  ops[nops].node = CU_REF_STATUS, ops[nops].off = 0;
  return cu_end(r, 1, 1024, ops, nops + 1);
}

/* The weighted or ignoring gradient's divisor first: the counted rows'
 * total weight and the sum of the class weights, into st[0], st[1] (the
 * kernel's scratch; labels out of range are flagged here). */
static int ce_grad_weights(cu_rctx *r, const ce_form *f, int64_t C, int64_t rows, cu_ref st) {
  char wl[48], wj[48];
  ce_w(wl, sizeof wl, f, "lab"), ce_w(wj, sizeof wj, f, "j");
  int nops = f->wop ? 5 : 4;
  cu_begin(r, 1024);
  cu_params(r, nops);
  cu_status_param(r);
  cu_sb_printf(&r->b,
               ", float* __restrict__ st) {\n  const long long C = %lldLL, ROWS = %lldLL;\n  float wsum = 0.f, ww = 0.f;\n"
               "#define IGNORED continue\n"
               "  for (long long row = threadIdx.x; row < ROWS; row += blockDim.x) {\n",
               (long long)C, (long long)rows);
  ce_label(&r->b, f, "1", cu_code_of(r->k->node, 1));
  cu_sb_printf(&r->b, "    wsum += %s;\n  }\n#undef IGNORED\n"
                      "  for (long long j = threadIdx.x; j < C; j += blockDim.x) ww += %s;\n"
                      "  wsum = lt_block_reduce(wsum, 0);\n  ww = lt_block_reduce(ww, 0);\n"
                      "  if (threadIdx.x == 0) { st[0] = wsum; st[1] = ww; }\n}\n",
               wl, wj);
  cu_ref ops[7];
  cu_refs(r, ops, nops);
  ops[nops].node = CU_REF_STATUS, ops[nops].off = 0;
  ops[nops + 1] = st;
  return cu_end(r, 1, 1024, ops, nops + 2);
}

/* dx = dl / W ((1 - ls) w[lab] (p_j - [j == lab]) + ls / C (p_j sum_c w[c] - w[j])), W the counted rows'
 * total weight (rows without weights or an ignore_index); an ignored row's gradient is 0. */
static int r_cross_entropy_grad(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  int64_t C = n->shape.d[n->shape.rank - 1], rows = ir_numel(&n->shape) / C;
  ce_form f = ce_form_of(n, 4, n->nin == 4, C);
  int general = f.wop || f.has_ignore;
  cu_ref st = cu_ref_at(CU_REF_ARENA, r->p->buf[r->k->node].scr);
  if (general && st.off < 0) return cu_unsupported(r, "no scratch for the loss's total weight");
  if (general && ce_grad_weights(r, &f, C, rows, st)) return -1;
  char wl[48], wj[48], div[64];
  ce_w(wl, sizeof wl, &f, "lab"), ce_w(wj, sizeof wj, &f, "l");
  if (general) snprintf(div, sizeof div, "st[0]");
  else snprintf(div, sizeof div, "%lld.f", (long long)rows);
  unsigned t = cu_row_threads(C);
  cu_begin(r, (int)t);
  cu_params(r, f.wop ? 5 : 4); /* dx, logits, labels, dl, weight? */
  cu_status_param(r);
  if (general) cu_sb_printf(&r->b, ", const float* __restrict__ st");
  cu_rows_open(&r->b, rows, C, 1);
  cu_sb_printf(&r->b, "    const long long C = LEN;\n"
                      "#define IGNORED { " FOR_L "a0[base + l] = 0.f; continue; }\n");
  ce_label(&r->b, &f, general ? "0" : "threadIdx.x == 0", cu_code_of(r->k->node, 1));
  cu_sb_printf(&r->b, "#undef IGNORED\n"
                      "    float mx = -LT_INF, s = 0.f, scale = a3[0] / %s, wl = %s, ww = %s;\n"
                      FOR_L "mx = fmaxf(mx, a1[base + l]);\n    mx = lt_block_reduce(mx, 1);\n"
                      FOR_L "s += expf(a1[base + l] - mx);\n    s = lt_block_reduce(s, 0);\n"
                      FOR_L "{\n      float p = expf(a1[base + l] - mx) / s;\n"
                      "      a0[base + l] = scale * ((1.f - %s) * wl * (p - (l == lab ? 1.f : 0.f)) + %s * (p * ww - %s));\n"
                      "    }\n",
               div, wl, general ? "st[1]" : "(float)C", f.ls, f.lsc, wj);
  cu_sb_printf(&r->b, "  }\n}\n");
  cu_ref ops[7];
  int nops = f.wop ? 5 : 4;
  cu_refs(r, ops, nops);
  ops[nops].node = CU_REF_STATUS, ops[nops].off = 0;
  if (general) ops[nops + 1] = st;
  return cu_end(r, cu_blocks(rows, 1), t, ops, nops + 1 + general);
}

/* Pointwise losses: the mean over the broadcast shape of f(p, t), one block. */
static int r_pair_loss(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0), *a = cu_opn(r, 1), *b = cu_opn(r, 2);
  ir_shape s;
  if (ir_broadcast(&a->shape, &b->shape, &s)) return cu_unsupported(r, "operands that do not broadcast");
  char d[48], f[256];
  switch (n->op) {
  case IR_MSE: snprintf(f, sizeof f, "(p - t) * (p - t)"); break;
  case IR_L1: snprintf(f, sizeof f, "fabsf(p - t)"); break;
  case IR_BCE: snprintf(f, sizeof f, "fmaxf(p, 0.f) - p * t + log1pf(expf(-fabsf(p)))"); break;
  case IR_HUBER:
    cu_flt(n->attr.f, d, sizeof d);
    snprintf(f, sizeof f, "(fabsf(p - t) < %s ? 0.5f * (p - t) * (p - t) : %s * (fabsf(p - t) - 0.5f * %s))", d, d, d);
    break;
  default: return cu_unsupported(r, "the loss is not rendered");
  }
  int64_t count = ir_numel(&s);
  cu_begin(r, 1024);
  cu_params(r, 3);
  cu_sb_printf(&r->b, ") {\n  float acc = 0.f;\n  for (long long e = threadIdx.x; e < %lldLL; e += blockDim.x) {\n"
                      "    float p = ", (long long)count);
  cu_load(&r->b, "a1", &s, a, "e");
  cu_sb_printf(&r->b, ", t = ");
  cu_load(&r->b, "a2", &s, b, "e");
  cu_sb_printf(&r->b, ";\n    acc += %s;\n  }\n  acc = lt_block_reduce(acc, 0);\n"
                      "  if (threadIdx.x == 0) a0[0] = acc / %lld.f;\n}\n", f, (long long)count);
  cu_ref ops[3];
  cu_refs(r, ops, 3);
  return cu_end(r, 1, 1024, ops, 3);
}

/* ---- data movement ---- */

/* A thread per result element: `body` computes a0[e] from e. */
int cu_per_element(cu_rctx *r, int nops, int status, const char *body) {
  const ir_node *n = cu_opn(r, 0);
  int64_t count = ir_numel(&n->shape);
  cu_begin(r, EW);
  cu_params(r, nops);
  if (status) cu_status_param(r);
  cu_loop_open(&r->b, count);
  cu_sb_printf(&r->b, "%s  }\n}\n", body);
  cu_ref ops[CU_MAXOPS];
  cu_refs(r, ops, nops);
  if (status) ops[nops].node = CU_REF_STATUS, ops[nops].off = 0;
  return cu_end(r, cu_blocks(count, EW), EW, ops, nops + status);
}

static int r_slice(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0), *x = cu_opn(r, 1);
  int grad = n->op == IR_SLICE_GRAD;
  const ir_shape *full = grad ? &n->shape : &x->shape;
  int64_t outer, len, inner, olen = n->attr.end - n->attr.start;
  cu_around(full, n->attr.axis, &outer, &len, &inner);
  char body[512];
  if (!grad)
    snprintf(body, sizeof body, "    long long o = e / (%lldLL * %lldLL), q = e %% (%lldLL * %lldLL);\n"
             "    a0[e] = a1[(o * %lldLL + %lldLL) * %lldLL + q];\n", (long long)olen, (long long)inner,
             (long long)olen, (long long)inner, (long long)len, (long long)n->attr.start, (long long)inner);
  else
    snprintf(body, sizeof body, "    long long l = e / %lldLL %% %lldLL, o = e / (%lldLL * %lldLL), i = e %% %lldLL;\n"
             "    a0[e] = l >= %lldLL && l < %lldLL ? a1[(o * %lldLL + l - %lldLL) * %lldLL + i] : 0.f;\n",
             (long long)inner, (long long)len, (long long)len, (long long)inner, (long long)inner,
             (long long)n->attr.start, (long long)n->attr.end, (long long)olen, (long long)n->attr.start,
             (long long)inner);
  return cu_per_element(r, 2, 0, body);
}

static int r_transpose(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0), *x = cu_opn(r, 1);
  cu_sb b = {0};
  cu_sb_printf(&b, "    long long src = 0");
  int64_t div = 1;
  for (int j = n->shape.rank - 1; j >= 0; j--) {
    int64_t st = 1;
    for (int a = (int)n->attr.list[j] + 1; a < x->shape.rank; a++) st *= x->shape.d[a];
    cu_sb_printf(&b, " + (e / %lldLL %% %lldLL) * %lldLL", (long long)div, (long long)n->shape.d[j], (long long)st);
    div *= n->shape.d[j];
  }
  cu_sb_printf(&b, ";\n    a0[e] = a1[src];\n");
  int rc = b.oom ? ir_fail(r->msg, r->msgn, "out of memory") : cu_per_element(r, 2, 0, b.s);
  free(b.s);
  return rc;
}

static int r_concat(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  int64_t outer, olen, inner;
  cu_around(&n->shape, n->attr.axis, &outer, &olen, &inner);
  cu_sb b = {0};
  cu_sb_printf(&b, "    long long o = e / (%lldLL * %lldLL), l = e / %lldLL %% %lldLL, i = e %% %lldLL;\n",
               (long long)olen, (long long)inner, (long long)inner, (long long)olen, (long long)inner);
  int64_t at = 0;
  for (int j = 0; j < n->nin; j++) {
    int64_t len = r->g->nodes[n->in[j]].shape.d[n->attr.axis];
    cu_sb_printf(&b, "    %sif (l < %lldLL) a0[e] = a%d[(o * %lldLL + l - %lldLL) * %lldLL + i];\n", j ? "else " : "",
                 (long long)(at + len), j + 1, (long long)len, (long long)at, (long long)inner);
    at += len;
  }
  int rc = b.oom ? ir_fail(r->msg, r->msgn, "out of memory") : cu_per_element(r, 1 + n->nin, 0, b.s);
  free(b.s);
  return rc;
}

static int r_broadcast_to(cu_rctx *r) {
  cu_sb b = {0};
  cu_sb_printf(&b, "    a0[e] = ");
  cu_load(&b, "a1", &cu_opn(r, 0)->shape, cu_opn(r, 1), "e");
  cu_sb_printf(&b, ";\n");
  int rc = b.oom ? ir_fail(r->msg, r->msgn, "out of memory") : cu_per_element(r, 2, 0, b.s);
  free(b.s);
  return rc;
}

static int r_embedding(cu_rctx *r) {
  const ir_node *w = cu_opn(r, 2);
  int64_t V = w->shape.d[0], D = w->shape.d[1];
  char body[512];
  snprintf(body, sizeof body, "    long long id = (long long)a1[e / %lldLL];\n"
           "    if (id < 0 || id >= %lldLL) { lt_fail(status, %lld); a0[e] = 0.f; continue; }\n"
           "    a0[e] = a2[id * %lldLL + e %% %lldLL];\n", (long long)D, (long long)V, cu_code_of(r->k->node, 0),
           (long long)D, (long long)D);
  return cu_per_element(r, 3, 1, body);
}

/* The scatter-add of dy rows: zero the result, then atomic adds. */
static int r_embedding_grad(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0), *ids = cu_opn(r, 1);
  int64_t V = n->shape.d[0], D = n->shape.d[1], count = ir_numel(&ids->shape) * D;
  cu_launch z;
  memset(&z, 0, sizeof z);
  z.what = CU_L_ZERO, z.zero.node = r->k->node, z.zero_bytes = ir_numel(&n->shape) * 4;
  if (cu_add_launch(r, &z)) return -1;
  cu_begin(r, EW);
  cu_params(r, 3);
  cu_status_param(r);
  cu_loop_open(&r->b, count);
  cu_sb_printf(&r->b, "    long long id = (long long)a1[e / %lldLL];\n"
                      "    if (id < 0 || id >= %lldLL) { lt_fail(status, %lld); continue; }\n"
                      "    atomicAdd(&a0[id * %lldLL + e %% %lldLL], a2[e]);\n  }\n}\n",
               (long long)D, (long long)V, cu_code_of(r->k->node, 0), (long long)D, (long long)D);
  cu_ref ops[4];
  cu_refs(r, ops, 3);
  ops[3].node = CU_REF_STATUS, ops[3].off = 0;
  return cu_end(r, cu_blocks(count, EW), EW, ops, 4);
}

/* ---- pools ---- */

static int r_pool(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0), *x = cu_opn(r, 1);
  int is_max = n->op == IR_MAXPOOL2D;
  ir_pool p = ir_pool_geom(&x->shape, &n->attr); /* ir/conv.h: the 1-d pools are H = KH = 1 */
  int64_t H = p.H, W = p.W, OH = p.OH, OW = p.OW, s = p.s;
  char body[1024], fin[64];
  if (is_max) snprintf(fin, sizeof fin, "acc");
  else snprintf(fin, sizeof fin, "acc / %lld.f", (long long)(p.KH * p.KW));
  snprintf(body, sizeof body,
           "    long long ox = e %% %lldLL, oy = e / %lldLL %% %lldLL, pl = e / (%lldLL * %lldLL);\n"
           "    float acc = %s;\n    for (int ky = 0; ky < %lld; ky++) for (int kx = 0; kx < %lld; kx++) {\n"
           "      float v = a1[(pl * %lldLL + oy * %lldLL + ky) * %lldLL + ox * %lldLL + kx];\n      %s\n    }\n"
           "    a0[e] = %s;\n", (long long)OW, (long long)OW, (long long)OH, (long long)OH, (long long)OW,
           is_max ? "-LT_INF" : "0.f", (long long)p.KH, (long long)p.KW, (long long)H, (long long)s, (long long)W,
           (long long)s, is_max ? "if (v > acc || v != v) acc = v;" : "acc += v;",
           fin);
  return cu_per_element(r, 2, 0, body);
}

static int r_pool_grad(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0), *x = cu_opn(r, 1), *dy = cu_opn(r, 2);
  int is_max = n->attr.i == IR_MAXPOOL2D;
  ir_pool p = ir_pool_geom(&x->shape, &n->attr); /* ir/conv.h: the 1-d pools are H = KH = 1 */
  int64_t H = p.H, W = p.W, OH = p.OH, OW = p.OW, s = p.s, count = ir_numel(&dy->shape);
  cu_launch z;
  memset(&z, 0, sizeof z);
  z.what = CU_L_ZERO, z.zero.node = r->k->node, z.zero_bytes = ir_numel(&n->shape) * 4;
  if (cu_add_launch(r, &z)) return -1;
  cu_begin(r, EW);
  cu_params(r, 3);
  cu_loop_open(&r->b, count);
  cu_sb_printf(&r->b,
               "    long long ox = e %% %lldLL, oy = e / %lldLL %% %lldLL, pl = e / (%lldLL * %lldLL), at = -1;\n"
               "    float g = a2[e], best = -LT_INF;\n"
               "    for (int ky = 0; ky < %lld; ky++) for (int kx = 0; kx < %lld; kx++) {\n"
               "      long long i = (pl * %lldLL + oy * %lldLL + ky) * %lldLL + ox * %lldLL + kx;\n",
               (long long)OW, (long long)OW, (long long)OH, (long long)OH, (long long)OW,
               (long long)p.KH, (long long)p.KW, (long long)H, (long long)s, (long long)W, (long long)s);
  if (is_max)
    cu_sb_printf(&r->b, "      if (at < 0 || a1[i] > best || (a1[i] != a1[i] && best == best)) { best = a1[i]; at = i; }\n"
                        "    }\n    atomicAdd(&a0[at], g);\n  }\n}\n");
  else cu_sb_printf(&r->b, "      atomicAdd(&a0[i], g / %lld.f);\n    }\n  }\n}\n", (long long)(p.KH * p.KW));
  cu_ref ops[3];
  cu_refs(r, ops, 3);
  return cu_end(r, cu_blocks(count, EW), EW, ops, 3);
}

/* ---- convolutions: direct, each result element gathers its sum ----
 * The geometry is ir/conv.h's: x[N, C, H, W], w[O, C/G, KH, KW],
 * y[N, O, OH, OW] (1-d: H = KH = OH = 1), padding PT top / PL left, taps D
 * apart, output channel o reading input channels (o / OG) * CG + c. */

static ir_conv cv_of(const ir_shape *x, const ir_shape *w, const ir_attr *a) {
  ir_conv d = {0};
  char msg[256];
  if (ir_conv_geom(x, w, a, &d, msg, sizeof msg)) IR_UNREACHABLE("cu_render: not a convolution");
  return d;
}

static void cv_consts(cu_sb *b, const ir_conv *d) {
  cu_sb_printf(b, "  const long long N = %lldLL, C = %lldLL, H = %lldLL, W = %lldLL, O = %lldLL, KH = %lldLL,"
                  " KW = %lldLL, OH = %lldLL, OW = %lldLL, S = %lldLL, PT = %lldLL, PL = %lldLL, D = %lldLL,"
                  " CG = %lldLL, OG = %lldLL;\n  (void)N; (void)O; (void)C;\n",
               (long long)d->N, (long long)d->C, (long long)d->H, (long long)d->W, (long long)d->O, (long long)d->KH,
               (long long)d->KW, (long long)d->OH, (long long)d->OW, (long long)d->s, (long long)d->padT,
               (long long)d->padL, (long long)d->dil, (long long)d->Cg, (long long)d->Og);
}

static int r_conv2d(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  ir_conv d = cv_of(&cu_opn(r, 1)->shape, &cu_opn(r, 2)->shape, &n->attr);
  int nops = 1 + n->nin, bias = n->nin == 3;
  int64_t count = ir_numel(&n->shape);
  cu_begin(r, EW);
  cu_params(r, nops);
  cu_sb_printf(&r->b, ") {\n");
  cv_consts(&r->b, &d);
  cu_grid_loop(&r->b, count);
  cu_sb_printf(&r->b, "    long long ox = e %% OW, oy = e / OW %% OH, o = e / (OW * OH) %% O, in = e / (OW * OH * O);\n"
                      "    float acc = %s;\n"
                      "    for (long long cg = 0; cg < CG; cg++) for (long long ky = 0; ky < KH; ky++) {\n"
                      "      long long ch = o / OG * CG + cg, y = oy * S + ky * D - PT; if (y < 0 || y >= H) continue;\n"
                      "      for (long long kx = 0; kx < KW; kx++) {\n"
                      "        long long xx = ox * S + kx * D - PL; if (xx < 0 || xx >= W) continue;\n"
                      "        acc += a1[((in * C + ch) * H + y) * W + xx] * a2[((o * CG + cg) * KH + ky) * KW + kx];\n"
                      "      }\n    }\n    a0[e] = acc;\n  }\n}\n",
               bias ? "a3[o]" : "0.f");
  cu_ref ops[4];
  cu_refs(r, ops, nops);
  return cu_end(r, cu_blocks(count, EW), EW, ops, nops);
}

/* dx[n, ch, y, xx]: the sum over its group's o, ky, kx of the outputs that read it. */
static int r_conv2d_grad_input(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0); /* dy, w */
  ir_conv d = cv_of(&n->shape, &cu_opn(r, 2)->shape, &n->attr);
  int64_t count = ir_numel(&n->shape);
  cu_begin(r, EW);
  cu_params(r, 3);
  cu_sb_printf(&r->b, ") {\n");
  cv_consts(&r->b, &d);
  cu_grid_loop(&r->b, count);
  cu_sb_printf(&r->b, "    long long xx = e %% W, y = e / W %% H, ch = e / (W * H) %% C, in = e / (W * H * C);\n"
                      "    long long g = ch / CG, cg = ch %% CG;\n"
                      "    float acc = 0.f;\n"
                      "    for (long long og = 0; og < OG; og++) for (long long ky = 0; ky < KH; ky++) {\n"
                      "      long long o = g * OG + og, ty = y + PT - ky * D; if (ty < 0 || ty %% S) continue;\n"
                      "      long long oy = ty / S; if (oy >= OH) continue;\n"
                      "      for (long long kx = 0; kx < KW; kx++) {\n"
                      "        long long tx = xx + PL - kx * D; if (tx < 0 || tx %% S) continue;\n"
                      "        long long ox = tx / S; if (ox >= OW) continue;\n"
                      "        acc += a1[((in * O + o) * OH + oy) * OW + ox] * a2[((o * CG + cg) * KH + ky) * KW + kx];\n"
                      "      }\n    }\n    a0[e] = acc;\n  }\n}\n");
  cu_ref ops[3];
  cu_refs(r, ops, 3);
  return cu_end(r, cu_blocks(count, EW), EW, ops, 3);
}

/* dw[o, cg, ky, kx]: a block each, reducing over n, oy, ox. */
static int r_conv2d_grad_weight(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0); /* x, dy */
  ir_conv d = cv_of(&cu_opn(r, 1)->shape, &n->shape, &n->attr);
  int64_t count = ir_numel(&n->shape), nred = d.N * d.OH * d.OW;
  unsigned t = cu_row_threads(nred);
  cu_begin(r, (int)t);
  cu_params(r, 3);
  cu_sb_printf(&r->b, ") {\n");
  cv_consts(&r->b, &d);
  cu_sb_printf(&r->b, "  for (long long e = blockIdx.x; e < %lldLL; e += gridDim.x) {\n"
                      "    long long kx = e %% KW, ky = e / KW %% KH, cg = e / (KW * KH) %% CG, o = e / (KW * KH * CG);\n"
                      "    long long ch = o / OG * CG + cg;\n"
                      "    float acc = 0.f;\n"
                      "    for (long long q = threadIdx.x; q < N * OH * OW; q += blockDim.x) {\n"
                      "      long long ox = q %% OW, oy = q / OW %% OH, in = q / (OW * OH);\n"
                      "      long long y = oy * S + ky * D - PT, xx = ox * S + kx * D - PL;\n"
                      "      if (y < 0 || y >= H || xx < 0 || xx >= W) continue;\n"
                      "      acc += a2[((in * O + o) * OH + oy) * OW + ox] * a1[((in * C + ch) * H + y) * W + xx];\n"
                      "    }\n    acc = lt_block_reduce(acc, 0);\n    if (threadIdx.x == 0) a0[e] = acc;\n  }\n}\n",
               (long long)count);
  cu_ref ops[3];
  cu_refs(r, ops, 3);
  return cu_end(r, cu_blocks(count, 1), t, ops, 3);
}

/* ---- the table: a renderer per head op ---- */

static const cu_render_fn by_op[IR_NOPS] = {
  [IR_SOFTMAX] = r_softmax,           [IR_LOG_SOFTMAX] = r_softmax,
  [IR_SOFTMAX_GRAD] = r_softmax_grad, [IR_LOG_SOFTMAX_GRAD] = r_softmax_grad,
  [IR_SUM] = r_reduce,                [IR_MEAN] = r_reduce,        [IR_MAX] = r_reduce,   [IR_MIN] = r_reduce,
  [IR_SUM_TO] = r_sum_to,
  [IR_LAYERNORM] = r_layernorm,       [IR_LAYERNORM_GRAD] = r_layernorm_grad,
  [IR_CROSS_ENTROPY] = r_cross_entropy, [IR_CROSS_ENTROPY_GRAD] = r_cross_entropy_grad,
  [IR_MSE] = r_pair_loss,             [IR_L1] = r_pair_loss,       [IR_BCE] = r_pair_loss, [IR_HUBER] = r_pair_loss,
  [IR_SLICE] = r_slice,               [IR_SLICE_GRAD] = r_slice,   [IR_TRANSPOSE] = r_transpose,
  [IR_CONCAT] = r_concat,             [IR_BROADCAST_TO] = r_broadcast_to,
  [IR_EMBEDDING] = r_embedding,       [IR_EMBEDDING_GRAD] = r_embedding_grad,
  [IR_ATTENTION] = cu_render_attention, [IR_ATTENTION_SAVE] = cu_render_attention,
  [IR_ATTENTION_GRAD] = cu_render_attention_grad, [IR_ATTENTION_GRAD_SAVED] = cu_render_attention_grad,
  [IR_CONV2D] = r_conv2d,             [IR_CONV2D_GRAD_INPUT] = r_conv2d_grad_input,
  [IR_CONV2D_GRAD_WEIGHT] = r_conv2d_grad_weight,
  [IR_MAXPOOL2D] = r_pool,            [IR_AVGPOOL2D] = r_pool,     [IR_POOL2D_GRAD] = r_pool_grad,
};

cu_render_fn cu_rows_renderer(int op) { return op >= 0 && op < IR_NOPS ? by_op[op] : NULL; }

int cu_render_by_op(cu_rctx *r) {
  const ir_node *h = &r->g->nodes[r->k->head];
  for (int j = 0; j <= r->k->narg; j++) {
    ir_dtype t = cu_opn(r, j)->dtype;
    if ((t == IR_F16 || t == IR_BF16) && h->op != IR_QMATMUL) /* bf16/f16 weights: cu_render_quant.c */
      return cu_unsupported(r, "16-bit floats are not rendered");
  }
  cu_render_fn f = cu_op_renderer(h->op);
  return f ? f(r) : cu_unsupported(r, "%s has no CUDA kernel yet", ir_ops[h->op].name);
}

/* quantize_qdq.c -- static int8 between products (docs/quantize.md,
 * rt/rt_qdq.h), two passes that run after `quantize` in mode int8:
 *
 * qdq_place: each static int8 product on an integer kernel reads its input
 * through an explicit quantize node (the scale: its calibrated input
 * scale, s[N] of its NAME.i8s). Where a product's only reader is such a
 * quantize, directly or through a relu, the product writes int8 with that
 * scale and a dequantize node gives the f32 back:
 *   qmatmul_A -> dequantize(s_B) [-> relu] -> quantize(s_B) -> qmatmul_B
 * qdq_fold: each dequantize [-> relu] -> quantize pair with the same scale
 * goes (Q(DQ(q)) = q; the relu joins A's epilogue before the
 * requantization: Q(relu(y)) = max(Q(y), 0)), so A's kernel writes the
 * int8 that B reads, and B skips its activation quantization. A quantize
 * left before a product (the first layer's) goes back into the product's
 * kernel, which quantizes its f32 rows with the same arithmetic in the
 * same pass over them (and, where a scale is not calibrated, per row).
 * Neither pass changes a bit of any output (rt/rt_qdq.h). */
#include <string.h>

#include "passes/passes.h"
#include "rt/lathe_rt.h"

/* a static int8 product (qmatmul or qconv2d) on an integer kernel (the f32
 * form has no int8 rows) */
static int int8_product(const ir_node *n) {
  return (n->op == IR_QMATMUL || n->op == IR_QCONV2D) && n->attr.i == LATHE_RT_Q_S8 && lathe_rt_isa_int8(n->attr.k);
}

/* where the product's input scale is in its s: after its N (or O) columns' */
static int64_t scale_index(const ir_node *n) { return n->op == IR_QCONV2D ? n->attr.list[0] : n->attr.n; }

/* the attribute that makes a product's output int8: qmatmul's pad,
 * qconv2d's start (its pad is the convolution's) */
static int64_t *o8_attr(ir_attr *a, int op) { return op == IR_QCONV2D ? &a->start : &a->pad; }
static int writes_i8(const ir_node *n) {
  return (n->op == IR_QMATMUL && n->attr.pad == 1) || (n->op == IR_QCONV2D && n->attr.start == 1);
}

/* rw_reorder with drop[0 .. n0) marked (nodes added since are kept) */
static int reorder(ir_graph *g, const char *drop, int n0, char *msg, size_t mn) {
  char *all = ar_alloc(g->A, (size_t)g->nnodes + 1);
  memset(all, 0, (size_t)g->nnodes + 1);
  memcpy(all, drop, (size_t)n0);
  return rw_reorder(g, all, msg, mn);
}

/* a quantize node before every int8 product's f32 input; how many */
static int place_quantize(ir_graph *g, char *msg, size_t mn) {
  int n0 = g->nnodes, placed = 0;
  for (int p = 0; p < n0; p++) {
    const ir_node *pn = &g->nodes[p];
    if (!int8_product(pn) || g->nodes[pn->in[0]].dtype != IR_F32) continue;
    int in[2] = {pn->in[0], pn->in[2]};
    ir_attr at = {.n = scale_index(pn)}; /* s[N]: the input's scale */
    int q = ir_add(g, IR_QUANTIZE, in, 2, &at, pn->loc, msg, mn);
    if (q < 0) return -1;
    g->nodes[p].in[0] = q;
    placed++;
  }
  return placed && rw_reorder(g, NULL, msg, mn) ? -1 : placed;
}

/* the quantize that reads product p's output, directly or through a relu,
 * as the only reader of each; -1 if none */
static int next_quantize(const ir_graph *g, int p) {
  int r = qz_sole_reader(g, p);
  if (r >= 0 && g->nodes[r].op == IR_RELU) r = qz_sole_reader(g, r);
  return r >= 0 && g->nodes[r].op == IR_QUANTIZE ? r : -1;
}

int ps_qdq_place(ir_graph *g, char *msg, size_t mn) {
  if (g->quant != LATHE_RT_Q_S8) return 0;
  int placed = place_quantize(g, msg, mn);
  if (placed <= 0) return placed;
  int n0 = g->nnodes;
  char *drop = ar_alloc(g->A, (size_t)n0 + 1);
  memset(drop, 0, (size_t)n0 + 1);
  for (int p = 0; p < n0; p++) {
    int q = int8_product(&g->nodes[p]) && !writes_i8(&g->nodes[p]) ? next_quantize(g, p) : -1;
    if (q < 0) continue;
    ir_node pn = g->nodes[p];
    int in[8];
    memcpy(in, pn.in, sizeof(int) * (size_t)pn.nin);
    in[pn.nin] = g->nodes[q].in[1]; /* the reader's scales: requantize with its s[N] */
    ir_attr at = pn.attr, dat = {.n = g->nodes[q].attr.n};
    *o8_attr(&at, pn.op) = 1;
    int a = ir_add(g, pn.op, in, pn.nin + 1, &at, pn.loc, msg, mn);
    int din[2] = {a, in[pn.nin]};
    int d = a < 0 ? -1 : ir_add(g, IR_DEQUANTIZE, din, 2, &dat, pn.loc, msg, mn);
    if (d < 0) return -1;
    qz_take_readers(g, p, d);
    drop[p] = 1;
    placed++;
  }
  return reorder(g, drop, n0, msg, mn) ? -1 : placed;
}

/* quantize q reads dequantize [-> relu] of an int8-output product with the
 * same scale, each the only reader of the one before: the product, else
 * -1; *relu the relu (or -1), *d the dequantize */
static int folds(const ir_graph *g, int q, int *relu, int *d) {
  const ir_node *qn = &g->nodes[q];
  int v = qn->in[0];
  *relu = g->nodes[v].op == IR_RELU ? v : -1;
  if (*relu >= 0) v = g->nodes[v].in[0];
  const ir_node *dn = &g->nodes[v];
  if (dn->op != IR_DEQUANTIZE || dn->in[1] != qn->in[1] || dn->attr.n != qn->attr.n) return -1;
  if (qz_sole_reader(g, v) != (*relu >= 0 ? *relu : q) || (*relu >= 0 && qz_sole_reader(g, *relu) != q)) return -1;
  int p = dn->in[0];
  *d = v;
  return writes_i8(&g->nodes[p]) && qz_sole_reader(g, p) == v ? p : -1;
}

/* a quantize whose every reader is an int8 product reading it as its input
 * with that product's own scale: the product can quantize it itself */
static int into_reader(const ir_graph *g, int q) {
  const ir_node *qn = &g->nodes[q];
  int readers = 0;
  for (int o = 0; o < g->noutputs; o++)
    if (g->outputs[o].node == q) return 0;
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i].nin; k++) {
      const ir_node *r = &g->nodes[i];
      if (r->in[k] != q) continue;
      if (!int8_product(r) || k != 0 || r->in[2] != qn->in[1] || scale_index(r) != qn->attr.n) return 0;
      readers++;
    }
  return readers > 0;
}

int ps_qdq_fold(ir_graph *g, char *msg, size_t mn) {
  if (g->quant != LATHE_RT_Q_S8) return 0;
  int n0 = g->nnodes, changes = 0;
  char *drop = ar_alloc(g->A, (size_t)n0 + 1);
  memset(drop, 0, (size_t)n0 + 1);
  for (int q = 0; q < n0; q++) {
    int relu, d, p = g->nodes[q].op == IR_QUANTIZE ? folds(g, q, &relu, &d) : -1;
    if (p < 0) continue;
    ir_node pn = g->nodes[p];
    ir_attr at = pn.attr;
    at.axis = at.axis || relu >= 0; /* relu before the requantization */
    int f = ir_add(g, pn.op, pn.in, pn.nin, &at, g->nodes[q].loc, msg, mn);
    if (f < 0) return -1;
    qz_take_readers(g, q, f);
    drop[q] = drop[d] = drop[p] = 1;
    if (relu >= 0) drop[relu] = 1;
    changes++;
  }
  for (int q = 0; q < n0; q++)
    if (!drop[q] && g->nodes[q].op == IR_QUANTIZE && into_reader(g, q)) {
      qz_take_readers(g, q, g->nodes[q].in[0]);
      drop[q] = 1;
      changes++;
    }
  return changes && reorder(g, drop, n0, msg, mn) ? -1 : changes;
}

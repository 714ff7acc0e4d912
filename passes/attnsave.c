/* attnsave.c -- an attention whose gradient the step computes saves the
 * work its backward would otherwise redo. ATTENTION_GRAD recomputes the qkv
 * product, every head's softmax and the context (about as much as the
 * forward itself) so that the forward keeps nothing but its result: the
 * memory-lean choice, and -O0's. With this pass the pair becomes
 *
 *   s  = attention_save(x, wq, bq, wp, bp)      [y | qkv | ctx | lse]
 *   y  = reshape(slice(s, 0, B T d))            the forward's result
 *   g' = attention_grad_saved(x, wq, bq, wp, bp, dy, s)
 *
 * trading 5 B T d + B H T floats kept from the forward to the backward for
 * that recompute. Values are the same (the saved ones are what the
 * backward would have recomputed, bit for bit on the CPU backend).
 *
 * The new nodes are appended and the readers of the old pair pointed at
 * them; rw_reorder then moves them up to where they are read. */
#include <string.h>

#include "passes/passes.h"

static const ir_loc L0 = {0};

/* The attention_grad node that differentiates attention node a, or -1. */
static int grad_of(const ir_graph *g, int a) {
  const ir_node *n = &g->nodes[a];
  for (int i = a + 1; i < g->nnodes; i++) {
    const ir_node *q = &g->nodes[i];
    if (q->op != IR_ATTENTION_GRAD || !ir_attr_eq(&q->attr, &n->attr)) continue;
    int same = 1;
    for (int k = 0; k < 5; k++) same &= q->in[k] == n->in[k];
    if (same) return i;
  }
  return -1;
}

/* Every read of node from (inputs, outputs, loss, gradients) reads to. */
static void redirect(ir_graph *g, int from, int to) {
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; i != to && k < g->nodes[i].nin; k++)
      if (g->nodes[i].in[k] == from) g->nodes[i].in[k] = to;
  for (int o = 0; o < g->noutputs; o++)
    if (g->outputs[o].node == from) g->outputs[o].node = to;
  for (int p = 0; g->grads && p < g->nparams; p++)
    if (g->grads[p] == from) g->grads[p] = to;
  if (g->loss == from) g->loss = to;
}

/* Rewrite the pair (a, gr); -1 with a message on failure. */
static int save_pair(ir_graph *g, int a, int gr, char *drop, char *msg, size_t mn) {
  ir_node an = g->nodes[a], gn = g->nodes[gr]; /* copies: ir_add may move the node array */
  ir_shape ys = an.shape;
  int s = ir_add(g, IR_ATTENTION_SAVE, an.in, 5, &an.attr, an.loc, msg, mn);
  if (s < 0) return -1;
  ir_attr sl = {0};
  sl.start = 0, sl.end = ir_numel(&ys);
  int flat = ir_add(g, IR_SLICE, &s, 1, &sl, L0, msg, mn);
  ir_attr rs = {0};
  rs.nlist = ys.rank;
  for (int d = 0; d < ys.rank; d++) rs.list[d] = ys.d[d];
  int y = flat < 0 ? -1 : ir_add(g, IR_RESHAPE, &flat, 1, &rs, L0, msg, mn);
  int in[7];
  memcpy(in, gn.in, sizeof(int) * 6);
  in[6] = s;
  int g2 = y < 0 ? -1 : ir_add(g, IR_ATTENTION_GRAD_SAVED, in, 7, &gn.attr, gn.loc, msg, mn);
  if (g2 < 0) return -1;
  g->nodes[y].name = an.name;
  redirect(g, a, y);
  redirect(g, gr, g2);
  drop[a] = drop[gr] = 1;
  return 0;
}

int ps_attnsave(ir_graph *g, char *msg, size_t msgn) {
  int n0 = g->nnodes, made = 0;
  char *drop = ar_alloc(g->A, (size_t)n0 * 4 + 16); /* room for the nodes appended below */
  memset(drop, 0, (size_t)n0 * 4 + 16);
  for (int a = 0; a < n0; a++) {
    if (g->nodes[a].op != IR_ATTENTION || g->nnodes + 4 > n0 * 4 + 16) continue;
    int gr = grad_of(g, a);
    if (gr < 0) continue;
    if (save_pair(g, a, gr, drop, msg, msgn)) return -1;
    made++;
  }
  if (!made) return 0;
  return rw_reorder(g, drop, msg, msgn) ? -1 : made;
}

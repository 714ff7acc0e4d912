/* foldbn.c -- an inference-form batchnorm right after a conv2d or a dense
 * layer folds into that layer's weight and bias:
 *
 *   s  = gamma / sqrt(running_var + eps)            per channel [C]
 *   W' = W * s  (conv2d: over its output channels; dense [in, C]: over columns)
 *   b' = (b - running_mean) * s + beta              (b = 0 without a bias)
 *
 * so batchnorm(conv2d(x, W, b)) = conv2d(x, W', b') and likewise for
 * x @ W + b. W' and b' are nodes computed from the parameters alone (a few
 * elementwise ops on the weights, tiny beside the layer); the batchnorm node
 * goes. Training graphs never reach this: the training step rewrites every
 * batchnorm into batchnorm_train first (passes/optimizer.c). The layer must
 * be read by the batchnorm alone (its own result is then unused), and a
 * dense must be the 2-d [batch, C] case, whose channel axis is its columns.
 *
 * The new nodes are appended and the readers of the batchnorm pointed at
 * the layer; rw_reorder then moves them up to where they are read. */
#include <string.h>

#include "passes/passes.h"

static const ir_loc L0 = {0};

typedef struct {
  ir_graph *g;
  char *msg;
  size_t mn;
  int failed;
} fb_ctx;

static int op2(fb_ctx *c, int op, int a, int b) {
  if (c->failed || a < 0 || b < 0) return -1;
  int id = ir_add(c->g, op, (int[]){a, b}, 2, NULL, L0, c->msg, c->mn);
  if (id < 0) c->failed = 1;
  return id;
}

static int reshape(fb_ctx *c, int x, const ir_shape *s) {
  if (c->failed || x < 0) return -1;
  ir_attr at = {0};
  at.nlist = s->rank;
  memcpy(at.list, s->d, sizeof(int64_t) * (size_t)s->rank);
  int id = ir_add(c->g, IR_RESHAPE, &x, 1, &at, L0, c->msg, c->mn);
  if (id < 0) c->failed = 1;
  return id;
}

/* How many nodes, outputs, gradients and the loss read node id. */
static int readers(const ir_graph *g, int id) {
  int r = g->loss == id;
  for (int i = id + 1; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i].nin; k++) r += g->nodes[i].in[k] == id;
  for (int o = 0; o < g->noutputs; o++) r += g->outputs[o].node == id;
  for (int p = 0; g->grads && p < g->nparams; p++) r += g->grads[p] == id;
  return r;
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

/* The layer batchnorm bn folds into: a conv2d, a rank-2 matmul without
 * transpose flags, or the add of a bias [C] to one; -1 if none. *mm: the
 * product, *bias: the add's bias operand or -1. */
static int layer_of(const ir_graph *g, int bn, int *mm, int *bias) {
  int p = g->nodes[bn].in[0];
  const ir_node *n = &g->nodes[p];
  *mm = p, *bias = -1;
  if (readers(g, p) != 1) return -1;
  if (n->op == IR_CONV2D) return p;
  if (n->op == IR_ADD && n->shape.rank == 2) {
    for (int k = 0; k < 2 && *bias < 0; k++) {
      const ir_node *a = &g->nodes[n->in[k]], *b = &g->nodes[n->in[1 - k]];
      if (a->op == IR_MATMUL && b->shape.rank == 1 && ir_shape_eq(&a->shape, &n->shape) && readers(g, n->in[k]) == 1)
        *mm = n->in[k], *bias = n->in[1 - k];
    }
    if (*bias < 0) return -1;
    n = &g->nodes[*mm];
  }
  if (n->op != IR_MATMUL || n->attr.i != 0 || n->shape.rank != 2 || g->nodes[n->in[1]].shape.rank != 2) return -1;
  return p;
}

static int op1(fb_ctx *c, int op, int a) {
  if (c->failed || a < 0) return -1;
  int id = ir_add(c->g, op, &a, 1, NULL, L0, c->msg, c->mn);
  if (id < 0) c->failed = 1;
  return id;
}

static int fold(fb_ctx *c, int bn, int layer, int mm, int bias, char *drop) {
  ir_graph *g = c->g;
  ir_node b = g->nodes[bn]; /* a copy: ir_add may move the node array */
  int gamma = b.in[1], beta = b.in[2], rm = b.in[3], rv = b.in[4];
  int conv = g->nodes[layer].op == IR_CONV2D, w = g->nodes[mm].in[1];
  int64_t C = g->nodes[gamma].shape.d[0];
  if (conv) bias = g->nodes[layer].nin > 2 ? g->nodes[layer].in[2] : -1;
  int eps = ir_add_const(g, g->nodes[rv].dtype, b.attr.f, L0);
  if (eps < 0) return ir_fail(c->msg, c->mn, "foldbn: cannot add a constant");
  int s = op2(c, IR_DIV, gamma, op1(c, IR_SQRT, op2(c, IR_ADD, rv, eps)));
  int shift = op2(c, IR_SUB, beta, op2(c, IR_MUL, rm, s));
  int nb = bias >= 0 ? op2(c, IR_ADD, op2(c, IR_MUL, bias, s), shift) : shift;
  ir_shape per_out = {.rank = g->nodes[w].shape.rank, .d = {C, 1, 1, 1}}; /* conv weight: [O, Cg, KH, KW] or [O, Cg, K] */
  int nw = op2(c, IR_MUL, w, conv ? reshape(c, s, &per_out) : s); /* dense [in, C]: s broadcasts over rows */
  if (c->failed) return -1;
  ir_node *L = &g->nodes[layer];
  if (conv) {
    int *in = ar_alloc(g->A, sizeof(int) * 3);
    in[0] = L->in[0], in[1] = nw, in[2] = nb;
    L->in = in, L->nin = 3;
  } else {
    g->nodes[mm].in[1] = nw;
    if (bias >= 0) L->in[L->in[0] == mm ? 1 : 0] = nb;
    else layer = op2(c, IR_ADD, mm, nb);
    if (layer < 0) return -1;
  }
  g->nodes[layer].name = b.name;
  redirect(g, bn, layer);
  drop[bn] = 1;
  return 0;
}

int ps_foldbn(ir_graph *g, char *msg, size_t msgn) {
  fb_ctx c = {g, msg, msgn, 0};
  int n0 = g->nnodes, made = 0;
  char *drop = ar_alloc(g->A, (size_t)n0 * 16 + 16); /* room for the nodes appended below */
  for (int bn = 0; bn < n0; bn++) {
    int mm, bias;
    if (g->nodes[bn].op != IR_BATCHNORM || g->nnodes + 12 > n0 * 16 + 16) continue;
    int layer = layer_of(g, bn, &mm, &bias);
    if (layer < 0) continue;
    if (fold(&c, bn, layer, mm, bias, drop)) return -1;
    made++;
  }
  if (!made) return 0;
  return rw_reorder(g, drop, msg, msgn) ? -1 : made;
}

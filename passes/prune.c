/* prune.c -- the graph side of pruning (`lathe prune`, runtime/api_prune.c):
 * which weights can be pruned, the mask a fine-tuning step multiplies into
 * them (ps_mask), and which tensor axes follow each neuron, channel or
 * attention head that structured pruning removes (pr_structure). */
#include <string.h>

#include "passes/passes.h"

/* A weight W read only as the weight operand of dense products (matmul's
 * right side, untransposed) or convolutions: the tensors pruning thins. */
int pr_prunable(const ir_graph *g, int param) {
  const ir_param *p = &g->params[param];
  if (p->state || p->buffer || p->stored || p->dtype != IR_F32 || p->shape.rank < 2) return 0;
  int readers = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    for (int k = 0; k < n->nin; k++) {
      if (n->in[k] != p->node) continue;
      int dense = n->op == IR_MATMUL && k == 1 && n->attr.i == 0 && p->shape.rank == 2;
      if (!dense && !(n->op == IR_CONV2D && k == 1)) return 0;
      readers++;
    }
  }
  for (int o = 0; o < g->noutputs; o++)
    if (g->outputs[o].node == p->node) return 0;
  return readers > 0;
}

/* Every prunable W gets a buffer W.mask (ones unless loaded) and its readers
 * read mul(W, W.mask): the masked entries' gradient is zero and the product
 * never sees them, whatever the optimizer does to W. Buffers are not trained
 * (passes/optimizer.c) and have no gradient (passes/autodiff.c). */
int ps_mask(ir_graph *g, char *msg, size_t mn) {
  int np0 = g->nparams, n0 = g->nnodes, changes = 0;
  char *want = ar_alloc(g->A, (size_t)np0 + 1);
  for (int i = 0; i < np0; i++) want[i] = (char)pr_prunable(g, i);
  for (int i = 0; i < np0; i++) {
    if (!want[i]) continue;
    ir_param p = g->params[i];
    ir_loc loc = g->nodes[p.node].loc;
    int mk = ir_add_param(g, ar_printf(g->A, "%s%s", p.name, PR_MASK_SUFFIX), IR_F32, &p.shape, IR_INIT_ONES, 0, 0,
                          0, loc);
    if (mk < 0) return ir_fail(msg, mn, "mask: cannot add a mask for '%s'", p.name);
    g->params[g->nparams - 1].buffer = 1;
    int in[2] = {p.node, mk};
    int m = ir_add(g, IR_MUL, in, 2, NULL, loc, msg, mn);
    if (m < 0) return -1;
    for (int j = 0; j < n0; j++)
      for (int k = 0; k < g->nodes[j].nin; k++)
        if (g->nodes[j].in[k] == p.node) g->nodes[j].in[k] = m;
    changes++;
  }
  return changes && rw_reorder(g, NULL, msg, mn) ? -1 : changes;
}

/* ---- structured pruning ---- */

/* Ops a unit passes through unchanged in meaning: elementwise on one
 * operand, and pools, which keep channels. */
static int passes_units(const ir_node *n) {
  return ir_ops[n->op].cat == IR_CAT_UNARY || n->op == IR_MAXPOOL2D || n->op == IR_AVGPOOL2D;
}

static int only_reader(const ir_graph *g, int node, int *reader, int *slot) {
  int count = 0;
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i].nin; k++)
      if (g->nodes[i].in[k] == node) *reader = i, *slot = k, count++;
  for (int o = 0; o < g->noutputs; o++)
    if (g->outputs[o].node == node) count += 2;
  if (g->loss == node) count += 2;
  return count == 1;
}

static int param_of(const ir_graph *g, int node) {
  const ir_node *n = &g->nodes[node];
  return n->op == IR_PARAM ? (int)n->attr.i : -1;
}

static int add_blocks(pr_plan *pl, int param, int dim, int64_t group, int64_t blocks, int64_t stride, int layer) {
  for (int s = 0; s < pl->nslices; s++)
    if (pl->slices[s].param == param && pl->slices[s].dim == dim) return -1; /* two layers on one axis */
  if (pl->nslices >= PR_MAXSLICES) return -1;
  pl->slices[pl->nslices++] = (pr_slice){param, dim, group, blocks, stride, layer};
  return 0;
}

static int add_slice(pr_plan *pl, int param, int dim, int64_t group, int layer) {
  return add_blocks(pl, param, dim, group, 1, 0, layer);
}

/* Follow layer L's output (node y, `units` wide on axis `axis`) to the one
 * layer that reads it; the axes that index its units are recorded. A reason
 * on failure. */
static const char *follow(const ir_graph *g, pr_plan *pl, int L, int y, int axis) {
  int64_t group = 1;
  for (int guard = 0; guard < g->nnodes; guard++) {
    int r, k;
    if (!only_reader(g, y, &r, &k)) return "its output is read by more than one node, or is a model output";
    const ir_node *n = &g->nodes[r];
    if (k == 0 && passes_units(n)) { y = r; continue; }
    if (k == 0 && n->op == IR_BATCHNORM && axis == 1 && group == 1) {
      for (int j = 1; j < n->nin; j++) {
        int p = param_of(g, n->in[j]);
        if (p < 0 || add_slice(pl, p, 0, 1, L)) return "a batchnorm after it has no own statistics";
      }
      y = r;
      continue;
    }
    const ir_shape *xs = &g->nodes[y].shape;
    if (k == 0 && n->op == IR_RESHAPE && axis == 1 && n->shape.rank == 2 && n->shape.d[0] == xs->d[0]) {
      group = 1; /* flatten [N, C, ...] -> [N, C * rest]: unit c owns columns c*rest .. c*rest+rest-1 */
      for (int d = 2; d < xs->rank; d++) group *= xs->d[d];
      axis = 1, y = r;
      continue;
    }
    int w = n->nin > 1 ? param_of(g, n->in[1]) : -1;
    if (k == 0 && n->op == IR_MATMUL && n->attr.i == 0 && axis == xs->rank - 1 && w >= 0 && pr_prunable(g, w) &&
        g->params[w].shape.rank == 2)
      return add_slice(pl, w, 0, group, L) ? "its reader's weight is pruned twice" : NULL;
    if (k == 0 && n->op == IR_CONV2D && axis == 1 && group == 1 && n->attr.k <= 1 && w >= 0 && pr_prunable(g, w))
      return add_slice(pl, w, 1, 1, L) ? "its reader's weight is pruned twice" : NULL;
    return ar_printf(g->A, "its output flows into %s, which pruning cannot resize", ir_ops[n->op].name);
  }
  return "no reader";
}

/* ---- attention heads ---- */

static int readers_of(const ir_graph *g, int node) {
  int count = 0;
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i].nin; k++) count += g->nodes[i].in[k] == node;
  for (int o = 0; o < g->noutputs; o++) count += 2 * (g->outputs[o].node == node);
  return count;
}

/* The parameter behind an attention input: the param itself (attention) or
 * the param an mha input slices (self-attention's packed qkv), read by
 * nothing else than `uses` nodes (the slices, or the op). */
static int attn_param(const ir_graph *g, int node, int uses) {
  const ir_node *n = &g->nodes[node];
  if (n->op == IR_SLICE) node = n->in[0];
  int p = param_of(g, node);
  if (p < 0 || g->params[p].state || g->params[p].buffer || g->params[p].stored || g->params[p].dtype != IR_F32)
    return -1;
  return readers_of(g, node) == uses ? p : -1;
}

/* Attention node i as a layer whose units are heads: qkv's q, k and v
 * column blocks (e wide each) and its bias lose a head's hd columns in each
 * block, proj.weight its hd rows. Plain attention, or mha's self-attention
 * with one key/value head per query head; why set otherwise. */
static void attention_layer(const ir_graph *g, pr_plan *pl, int i, pr_layer *L) {
  const ir_node *n = &g->nodes[i];
  int mha = n->op == IR_MHA, l = pl->nlayers;
  L->attn = 1, L->node = i, L->loc = n->loc, L->bias = -1, L->proj = -1;
  int self = !mha || g->nodes[n->in[1]].op == IR_SLICE; /* mha's self-attention slices q (and kv) out of qkv */
  L->weight = attn_param(g, n->in[1], mha && self ? 2 : 1);
  if (!self) L->why = "cross-attention heads are not pruned";
  else if (mha && n->attr.k != n->attr.heads) L->why = "grouped key/value heads (kv_heads=) are not pruned";
  if (L->why) return;
  int qb = attn_param(g, n->in[2], mha ? 2 : 1), pw = attn_param(g, n->in[mha ? 6 : 3], 1);
  int64_t e = mha ? g->nodes[n->in[1]].shape.d[1] : n->shape.d[2], H = n->attr.heads;
  if (L->weight < 0 || qb < 0 || pw < 0 || H < 2) {
    L->why = H < 2 ? "it has one head" : "its weights are shared or computed";
    return;
  }
  L->bias = qb, L->proj = pw, L->units = H, L->hd = e / H;
  int ns = pl->nslices;
  if (add_blocks(pl, L->weight, 1, L->hd, 3, e, l) || add_blocks(pl, qb, 0, L->hd, 3, e, l) ||
      add_slice(pl, pw, 0, L->hd, l)) {
    pl->nslices = ns, L->units = 0;
    L->why = "its weights are pruned twice";
  }
}

/* Layer candidates: a dense product x @ W (+ b) or an ungrouped conv2d,
 * whose W is prunable and read once. Its units: W's last axis (dense) or
 * first (conv); its bias follows them. */
int pr_structure(const ir_graph *g, pr_plan *pl) {
  memset(pl, 0, sizeof *pl);
  for (int i = 0; i < g->nnodes && pl->nlayers < PR_MAXLAYERS; i++) {
    const ir_node *n = &g->nodes[i];
    if (n->op == IR_ATTENTION || n->op == IR_MHA) {
      pr_layer *L = &pl->layers[pl->nlayers];
      memset(L, 0, sizeof *L);
      attention_layer(g, pl, i, L);
      if (L->why) L->units = 0;
      pl->nlayers++;
      continue;
    }
    int w = n->nin > 1 ? param_of(g, n->in[1]) : -1;
    if (w < 0 || !pr_prunable(g, w)) continue;
    int conv = n->op == IR_CONV2D;
    if (conv && n->attr.k > 1) continue;
    if (!conv && (n->op != IR_MATMUL || n->attr.i != 0)) continue;
    pr_layer *L = &pl->layers[pl->nlayers];
    memset(L, 0, sizeof *L);
    L->weight = w, L->node = i, L->bias = -1, L->conv = conv;
    L->units = conv ? g->params[w].shape.d[0] : g->params[w].shape.d[1];
    L->loc = n->loc;
    int y = i, r, k;
    if (conv && n->nin > 2) L->bias = param_of(g, n->in[2]);
    else if (!conv && only_reader(g, i, &r, &k) && g->nodes[r].op == IR_ADD) {
      int b = param_of(g, g->nodes[r].in[1 - k]);
      if (b >= 0 && g->params[b].shape.rank == 1 && g->params[b].shape.d[0] == L->units) L->bias = b, y = r;
    }
    int ns = pl->nslices;
    if (add_slice(pl, w, conv ? 0 : 1, 1, pl->nlayers) || (L->bias >= 0 && add_slice(pl, L->bias, 0, 1, pl->nlayers))) {
      pl->nslices = ns;
      continue;
    }
    L->why = follow(g, pl, pl->nlayers, y, conv ? 1 : g->nodes[y].shape.rank - 1);
    if (L->why) { /* not prunable: keep it in the list for the report, with no axis */
      pl->nslices = ns;
      L->units = 0;
    }
    pl->nlayers++;
  }
  return 0;
}

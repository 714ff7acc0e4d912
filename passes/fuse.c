/* fuse.c -- elementwise fusion: a tree of f32 elementwise nodes whose inner
 * results are read only inside the tree becomes one IR_FUSED node, a small
 * program run per element (ir.h). The backend then makes one loop of it, so
 * the inner tensors are never written to memory nor read back: an Adam
 * update of a parameter, ten elementwise nodes, becomes three kernels (new
 * m, new v, new weight: each is an output, so each is a root).
 *
 * Grouping, in one sweep over the node order: every fusable node starts as
 * the root of its own group; it absorbs the group of an operand when that
 * operand is fusable, has the node's shape (no recomputation of a smaller
 * tensor per element), is read by this node alone and is not an output, the
 * loss or a gradient. The fused node takes the root's place (id), so every
 * input it reads is still computed before it. Operands the backend cannot
 * index cheaply (ir_bcast_kind_of says IR_BC_OTHER) keep their node out of
 * any group.
 *
 * Products are not fused here: a GEMM is not elementwise. The CPU backend
 * fuses a product with the fused node that reads it (its epilogue). */
#include <string.h>

#include "passes/passes.h"

/* Kernel arguments a backend can pass: keep the inputs of one fused node
 * well under the CPU kernel's limit (the result and the product's operands
 * take three more when it becomes a product's epilogue). */
enum { FZ_MAXIN = 12 };

typedef struct {
  ir_graph *g;
  int *root;     /* per node: the root of its group (itself for roots), -1 = not fusable */
  int *size;     /* per root: member count */
  int *readers;  /* per node: reads by other nodes (each operand slot counts) */
  char *pinned;  /* outputs, the loss, gradients: must stay tensors */
} fz_ctx;

static int fusable(const fz_ctx *c, int id) {
  const ir_node *n = &c->g->nodes[id];
  if (!ir_fusable_step(n->op, &n->attr) || n->dtype != IR_F32 || n->fusion) return 0;
  for (int k = 0; k < n->nin; k++) {
    const ir_node *x = &c->g->nodes[n->in[k]];
    int64_t m;
    if (x->dtype != IR_F32 || ir_bcast_kind_of(&n->shape, &x->shape, &m) == IR_BC_OTHER) return 0;
  }
  return 1;
}

static int reads_of(const ir_node *n, int x) {
  int r = 0;
  for (int k = 0; k < n->nin; k++) r += n->in[k] == x;
  return r;
}

/* Distinct inputs from outside the union of the groups of roots a and b
 * (members among nodes lo..b). */
static int count_inputs(const fz_ctx *c, int lo, int a, int b) {
  int seen[FZ_MAXIN * 4], ns = 0;
  for (int i = lo; i <= b; i++) {
    if (c->root[i] != a && c->root[i] != b) continue;
    const ir_node *n = &c->g->nodes[i];
    for (int k = 0; k < n->nin; k++) {
      int x = n->in[k], dup = 0;
      if (c->root[x] == a || c->root[x] == b) continue;
      for (int j = 0; j < ns; j++) dup |= seen[j] == x;
      if (dup) continue;
      if (ns == FZ_MAXIN * 4) return ns;
      seen[ns++] = x;
    }
  }
  return ns;
}

/* Group of x (members lo[x]..x) joins node id's group, if the rules above
 * allow it. */
static void try_absorb(fz_ctx *c, int *lo, int id, int x) {
  const ir_graph *g = c->g;
  if (c->root[x] != x || c->pinned[x] || !ir_shape_eq(&g->nodes[x].shape, &g->nodes[id].shape)) return;
  if (c->readers[x] != reads_of(&g->nodes[id], x)) return;
  if (c->size[x] + c->size[id] > IR_FUSE_MAXSTEPS) return;
  int xlo = lo[x], newlo = xlo < lo[id] ? xlo : lo[id];
  if (count_inputs(c, newlo, x, id) > FZ_MAXIN) return;
  for (int i = xlo; i <= x; i++)
    if (c->root[i] == x) c->root[i] = id;
  c->size[id] += c->size[x];
  lo[id] = newlo;
}

static void find_groups(fz_ctx *c, int *lo) {
  ir_graph *g = c->g;
  for (int i = 0; i < g->nnodes; i++) {
    c->root[i] = fusable(c, i) ? i : -1;
    c->size[i] = 1;
    lo[i] = i;
    if (c->root[i] < 0) continue;
    const ir_node *n = &g->nodes[i];
    for (int k = 0; k < n->nin; k++)
      if (c->root[n->in[k]] == n->in[k]) try_absorb(c, lo, i, n->in[k]);
  }
}

/* Operand x of a member, as a step argument: an earlier step or an input. */
static int arg_of(const fz_ctx *c, int r, int x, const int *step_of, int *ins, int *nins) {
  if (c->root[x] == r) return -1 - step_of[x];
  for (int j = 0; j < *nins; j++)
    if (ins[j] == x) return j;
  ins[*nins] = x;
  return (*nins)++;
}

/* Turn root r (members lo..r) into one IR_FUSED node; members go (repl). */
static void build(fz_ctx *c, int r, int lo, int *step_of, int *repl) {
  ir_graph *g = c->g;
  ir_fusion *f = ar_alloc(g->A, sizeof *f);
  f->step = ar_alloc(g->A, sizeof(ir_fstep) * (size_t)c->size[r]);
  f->attr = ar_alloc(g->A, sizeof(ir_attr) * (size_t)c->size[r]);
  int ins[FZ_MAXIN * 4], nins = 0;
  for (int i = lo; i <= r; i++) {
    if (c->root[i] != r) continue;
    const ir_node *n = &g->nodes[i];
    ir_fstep *st = &f->step[f->nsteps];
    st->op = n->op, st->nin = n->nin;
    for (int k = 0; k < n->nin; k++) st->arg[k] = arg_of(c, r, n->in[k], step_of, ins, &nins);
    f->attr[f->nsteps] = n->attr;
    step_of[i] = f->nsteps++;
    if (i != r) repl[i] = -1;
  }
  ir_node *root = &g->nodes[r];
  root->op = IR_FUSED;
  root->nin = nins;
  root->in = ar_alloc(g->A, sizeof(int) * (size_t)nins);
  memcpy(root->in, ins, sizeof(int) * (size_t)nins);
  memset(&root->attr, 0, sizeof root->attr);
  root->fusion = f;
}

static void count_uses(fz_ctx *c) {
  ir_graph *g = c->g;
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i].nin; k++) c->readers[g->nodes[i].in[k]]++;
  for (int i = 0; i < g->noutputs; i++) c->pinned[g->outputs[i].node] = 1;
  for (int i = 0; g->grads && i < g->nparams; i++)
    if (g->grads[i] >= 0) c->pinned[g->grads[i]] = 1;
  if (g->loss >= 0) c->pinned[g->loss] = 1;
}

/* A lone unary_grad whose dy is a product read by it alone still becomes a
 * one-step program: the backend then applies it as that product's
 * epilogue (its own epilogue forms take one operand besides the product;
 * dy * f'(x) needs x too). That is the gelu/relu backward of every MLP. */
static int lone_epilogue(const fz_ctx *c, int r) {
  const ir_node *n = &c->g->nodes[r];
  if (n->op != IR_UNARY_GRAD || n->in[0] == n->in[1]) return 0;
  int dy = n->in[1];
  return c->g->nodes[dy].op == IR_MATMUL && c->readers[dy] == 1 && !c->pinned[dy];
}

/* A lone node whose every reader becomes a fused node of its shape (the
 * clipped gradient g * s that an Adam update's new m and new v both read)
 * becomes a one-step program too: the backend then runs it in the same
 * loop as its readers (fused siblings) and they take its value from
 * registers instead of reading it back. */
static int lone_sibling(const fz_ctx *c, int r) {
  const ir_graph *g = c->g;
  int seen = 0;
  for (int i = r + 1; i < g->nnodes && seen < c->readers[r]; i++)
    for (int k = 0; k < g->nodes[i].nin; k++) {
      if (g->nodes[i].in[k] != r) continue;
      int root = c->root[i]; /* the reader's group: it must become a fused node */
      if (root < 0 || c->size[root] < 2 || !ir_shape_eq(&g->nodes[root].shape, &g->nodes[r].shape)) return 0;
      seen++;
    }
  return seen > 0 && seen == c->readers[r];
}

int ps_fuse(ir_graph *g, char *msg, size_t msgn) {
  size_t nn = (size_t)g->nnodes + 1;
  fz_ctx c = {g, ar_alloc(g->A, sizeof(int) * nn), ar_alloc(g->A, sizeof(int) * nn), ar_alloc(g->A, sizeof(int) * nn),
              ar_alloc(g->A, nn)};
  int *lo = ar_alloc(g->A, sizeof(int) * nn), *step_of = ar_alloc(g->A, sizeof(int) * nn);
  count_uses(&c);
  find_groups(&c, lo);
  int *repl = rw_identity(g), made = 0;
  for (int r = 0; r < g->nnodes; r++)
    if (c.root[r] == r && (c.size[r] >= 2 || lone_epilogue(&c, r) || lone_sibling(&c, r)))
      build(&c, r, lo[r], step_of, repl), made++;
  if (!made) return 0;
  return rw_rebuild(g, repl, msg, msgn) ? -1 : made;
}

/* rewrite.c -- the one way passes change a graph's node list: edit nodes in
 * place, fill a replacement map, and rebuild through it (see passes.h). The
 * rebuild keeps every table that names nodes consistent, so no pass has to
 * renumber anything itself. */
#include <stdarg.h>
#include <string.h>

#include "passes/passes.h"

int *rw_identity(ir_graph *g) {
  int *r = ar_alloc(g->A, sizeof(int) * (size_t)(g->nnodes + 1));
  for (int i = 0; i < g->nnodes; i++) r[i] = i;
  return r;
}

int rw_resolve(const int *repl, int id) {
  while (id >= 0 && repl[id] >= 0 && repl[id] != id) id = repl[id];
  return id;
}

int rw_is_const(const ir_graph *g, int id) {
  int op = g->nodes[id].op;
  return op == IR_CONST || op == IR_ARANGE;
}

int rw_const_all(const ir_graph *g, int id, double v) {
  const ir_node *n = &g->nodes[id];
  if (n->op != IR_CONST) return 0;
  if (!n->data) return n->attr.f == v;
  int64_t k = ir_numel(&n->shape);
  for (int64_t e = 0; e < k; e++)
    if (n->data[e] != v) return 0;
  return 1;
}

/* New id of old node `id` through the map, or -1 when it went. */
static int mapped(const int *repl, const int *newid, int id) {
  id = rw_resolve(repl, id);
  return id < 0 ? -1 : newid[id];
}

/* Renumber a table entry; a node the program's interface names must stay. */
static int remap_ref(const int *repl, const int *newid, int *ref, const char *what, char *msg, size_t mn) {
  if (*ref < 0) return 0;
  int to = mapped(repl, newid, *ref);
  if (to < 0) return ir_fail(msg, mn, "rewrite: %s names node %d, which was dropped", what, *ref);
  *ref = to;
  return 0;
}

static int remap_tables(ir_graph *g, const int *repl, const int *newid, char *msg, size_t mn) {
  for (int i = 0; i < g->ninputs; i++)
    if (remap_ref(repl, newid, &g->inputs[i].node, "an input", msg, mn)) return -1;
  for (int i = 0; i < g->nparams; i++)
    if (remap_ref(repl, newid, &g->params[i].node, "a parameter", msg, mn)) return -1;
  for (int i = 0; i < g->noutputs; i++)
    if (remap_ref(repl, newid, &g->outputs[i].node, "an output", msg, mn)) return -1;
  for (int i = 0; g->grads && i < g->nparams; i++)
    if (remap_ref(repl, newid, &g->grads[i], "a gradient", msg, mn)) return -1;
  return remap_ref(repl, newid, &g->loss, "the loss", msg, mn);
}

int rw_rebuild(ir_graph *g, const int *repl, char *msg, size_t mn) {
  int n = g->nnodes;
  int *newid = ar_alloc(g->A, sizeof(int) * (size_t)(n + 1));
  ir_node *nodes = ar_alloc(g->A, sizeof(ir_node) * (size_t)(n + 1));
  int m = 0;
  for (int i = 0; i < n; i++) {
    const ir_node *old = &g->nodes[i];
    int leaf_iface = old->op == IR_INPUT || old->op == IR_PARAM;
    newid[i] = -1;
    if (leaf_iface && repl[i] != i)
      return ir_fail(msg, mn, "rewrite: node %d (%s '%s') is part of the program's interface and must stay", i,
                  ir_ops[old->op].name, old->name ? old->name : "?");
    if (repl[i] != i && repl[i] != -1 && (repl[i] < 0 || repl[i] > i))
      return ir_fail(msg, mn, "rewrite: node %d (%s) maps to %d, not an earlier node", i, ir_ops[old->op].name,
                  repl[i]);
    if (repl[i] != i) continue;
    ir_node *nw = &nodes[m];
    *nw = *old;
    nw->in = ar_alloc(g->A, sizeof(int) * (size_t)(old->nin ? old->nin : 1));
    for (int k = 0; k < old->nin; k++) {
      nw->in[k] = mapped(repl, newid, old->in[k]);
      if (nw->in[k] < 0)
        return ir_fail(msg, mn, "rewrite: node %d (%s) reads node %d, which was dropped", i, ir_ops[old->op].name,
                    old->in[k]);
    }
    newid[i] = m++;
  }
  if (remap_tables(g, repl, newid, msg, mn)) return -1;
  g->nodes = nodes;
  g->nnodes = g->capnodes = m;
  return 0;
}

/* ---- reordering: nodes a pass appended, moved up to where they are read ---- */

/* Emit node r after every input it has not had yet (an explicit stack:
 * chains run thousands of nodes deep). */
static void topo_visit(const ir_graph *g, int r, char *state, int *order, int *m, int *stack, int *pos) {
  int sp = 0;
  stack[sp] = r, pos[sp++] = 0;
  state[r] = 1;
  while (sp) {
    int i = stack[sp - 1];
    const ir_node *n = &g->nodes[i];
    if (pos[sp - 1] < n->nin) {
      int x = n->in[pos[sp - 1]++];
      if (!state[x]) {
        state[x] = 1;
        stack[sp] = x, pos[sp++] = 0;
      }
      continue;
    }
    state[i] = 2;
    order[(*m)++] = i;
    sp--;
  }
}

int rw_reorder(ir_graph *g, const char *drop, char *msg, size_t mn) {
  int n = g->nnodes;
  char *state = ar_alloc(g->A, (size_t)n + 1);
  int *order = ar_alloc(g->A, sizeof(int) * (size_t)(n + 1)), *stack = ar_alloc(g->A, sizeof(int) * (size_t)(n + 1));
  int *pos = ar_alloc(g->A, sizeof(int) * (size_t)(n + 1)), *newid = ar_alloc(g->A, sizeof(int) * (size_t)(n + 1));
  int m = 0;
  memset(state, 0, (size_t)n + 1);
  for (int i = 0; i < n; i++) {
    newid[i] = -1;
    if (drop && drop[i]) state[i] = 2; /* never emitted; a reader would fail below */
  }
  for (int i = 0; i < n; i++)
    if (!state[i]) topo_visit(g, i, state, order, &m, stack, pos);
  for (int k = 0; k < m; k++) newid[order[k]] = k;
  ir_node *nodes = ar_alloc(g->A, sizeof(ir_node) * (size_t)(m + 1));
  for (int k = 0; k < m; k++) {
    const ir_node *old = &g->nodes[order[k]];
    nodes[k] = *old;
    nodes[k].in = ar_alloc(g->A, sizeof(int) * (size_t)(old->nin ? old->nin : 1));
    for (int j = 0; j < old->nin; j++)
      if ((nodes[k].in[j] = newid[old->in[j]]) < 0)
        return ir_fail(msg, mn, "rewrite: node %d (%s) reads node %d, which was dropped", order[k],
                       ir_ops[old->op].name, old->in[j]);
  }
  int *ident = rw_identity(g);
  if (remap_tables(g, ident, newid, msg, mn)) return -1;
  g->nodes = nodes;
  g->nnodes = g->capnodes = m;
  return 0;
}

/* ---- a given order: nodes a pass moved up (passes/comm.c's collectives) ---- */

int rw_permute(ir_graph *g, const int *order, int *newid, char *msg, size_t mn) {
  int n = g->nnodes;
  int *nid = newid ? newid : ar_alloc(g->A, sizeof(int) * (size_t)(n + 1));
  for (int i = 0; i < n; i++) nid[i] = -1;
  for (int k = 0; k < n; k++) {
    if (order[k] < 0 || order[k] >= n || nid[order[k]] >= 0)
      return ir_fail(msg, mn, "rewrite: the order is not a permutation of the %d nodes", n);
    nid[order[k]] = k;
  }
  ir_node *nodes = ar_alloc(g->A, sizeof(ir_node) * (size_t)(n + 1));
  for (int k = 0; k < n; k++) {
    const ir_node *old = &g->nodes[order[k]];
    nodes[k] = *old;
    nodes[k].in = ar_alloc(g->A, sizeof(int) * (size_t)(old->nin ? old->nin : 1));
    for (int j = 0; j < old->nin; j++)
      if ((nodes[k].in[j] = nid[old->in[j]]) >= k)
        return ir_fail(msg, mn, "rewrite: node %d (%s) would read node %d, which comes later", order[k],
                       ir_ops[old->op].name, old->in[j]);
  }
  if (remap_tables(g, rw_identity(g), nid, msg, mn)) return -1;
  g->nodes = nodes;
  g->capnodes = n;
  return 0;
}

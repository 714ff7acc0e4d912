/* constfold.c -- constant folding with the reference interpreter's kernels:
 * a node whose inputs are all constants is computed by ir_interp on a
 * one-node graph (its constant inputs and itself), so folding and running
 * can never disagree. Values are computed as a float32 program computes
 * them (IR_INTERP_F32). Not folded: random ops (IR_OPF_RANDOM), results
 * with a NaN (kept for the run to produce, and report, where it happens),
 * results the interpreter rejects, and results larger than CF_MAX_ELEMS
 * elements unless no larger than the constants they come from (folding must
 * not blow up the program's constant data). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

static int foldable(const ir_graph *g, const ir_node *n) {
  if (ir_ops[n->op].cat == IR_CAT_LEAF || n->nin == 0 || (ir_op_flags[n->op] & (IR_OPF_RANDOM | IR_OPF_COMM))) return 0;
  int64_t from = 0, out = ir_numel(&n->shape);
  for (int k = 0; k < n->nin; k++) {
    if (!rw_is_const(g, n->in[k])) return 0;
    from += ir_numel(&g->nodes[n->in[k]].shape);
  }
  return out >= 1 && (out <= CF_MAX_ELEMS || out <= from);
}

/* Copy constant leaf src of g into the small graph m. */
static int copy_const(ir_graph *m, const ir_node *src) {
  if (src->op == IR_ARANGE) {
    ir_attr a = {.n = src->attr.n};
    return ir_add(m, IR_ARANGE, NULL, 0, &a, src->loc, NULL, 0);
  }
  int id = ir_add_const(m, src->dtype, src->attr.f, src->loc);
  if (id >= 0) {
    m->nodes[id].shape = src->shape;
    m->nodes[id].data = src->data;
  }
  return id;
}

/* Compute node n of g into a fresh arena array of numel doubles, or NULL. */
static double *evaluate(ir_graph *g, const ir_node *n) {
  arena A;
  ar_init(&A);
  ir_graph m;
  ir_graph_init(&m, &A, "constfold");
  int in[16], ok = n->nin <= 16;
  for (int k = 0; ok && k < n->nin; k++) ok = (in[k] = copy_const(&m, &g->nodes[n->in[k]])) >= 0;
  int id = ok ? ir_add(&m, n->op, in, n->nin, &n->attr, n->loc, NULL, 0) : -1;
  double *out = NULL;
  double **vals = id >= 0 ? calloc((size_t)m.nnodes, sizeof *vals) : NULL;
  if (vals && m.nodes[id].dtype == n->dtype && ir_shape_eq(&m.nodes[id].shape, &n->shape) &&
      ir_interp(&m, IR_INTERP_F32, vals, NULL, 0) == 0) {
    int64_t cnt = ir_numel(&n->shape);
    int nan = 0;
    for (int64_t e = 0; e < cnt; e++) nan |= isnan(vals[id][e]);
    if (!nan) {
      out = ar_alloc(g->A, sizeof(double) * (size_t)cnt);
      memcpy(out, vals[id], sizeof(double) * (size_t)cnt);
    }
  }
  if (vals) ir_interp_release(&m, vals);
  free(vals);
  ar_free(&A);
  return out;
}

/* Node id becomes a constant leaf holding v. */
static void become_const(ir_graph *g, int id, const double *v) {
  ir_node *n = &g->nodes[id];
  n->op = IR_CONST;
  n->nin = 0;
  memset(&n->attr, 0, sizeof n->attr);
  if (n->shape.rank == 0) n->attr.f = v[0], n->data = NULL;
  else n->data = v;
}

int ps_constfold(ir_graph *g, char *msg, size_t msgn) {
  (void)msg, (void)msgn;
  int folded = 0;
  for (int i = 0; i < g->nnodes; i++) {
    if (!foldable(g, &g->nodes[i])) continue;
    double *v = evaluate(g, &g->nodes[i]);
    if (v) become_const(g, i, v), folded++;
  }
  return folded;
}

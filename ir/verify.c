/* verify.c -- structural invariants of a graph, checked between passes:
 * ids in range and topological, arity, every stored type equal to what the
 * op's shape rule recomputes, leaves tied to their tables both ways, outputs
 * and loss valid. A failure here is a bug in whoever built or rewrote the
 * graph; the message names the node. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ir.h"

#define SBUF 200

static const char *tstr(ir_dtype t, const ir_shape *s, char *buf) {
  char tmp[SBUF];
  snprintf(buf, SBUF, "%s%s", ir_dtype_name(t), ir_shape_str(s, tmp, sizeof tmp));
  return buf;
}

static int arity_ok(int arity, int nin) {
  if (arity == -1) return nin >= 1;
  if (arity == -2) return nin == 2 || nin == 3;
  return nin == arity;
}

/* A leaf must be the node its table entry names, with the same type. */
static int verify_leaf(const ir_graph *g, int id, char *msg, size_t mn) {
  const ir_node *n = &g->nodes[id];
  const ir_dtype *t = NULL;
  const ir_shape *s = NULL;
  int node = -1;
  if (n->op == IR_INPUT && n->attr.i >= 0 && n->attr.i < g->ninputs) {
    const ir_input *in = &g->inputs[n->attr.i];
    t = &in->dtype, s = &in->shape, node = in->node;
  } else if (n->op == IR_PARAM && n->attr.i >= 0 && n->attr.i < g->nparams) {
    const ir_param *p = &g->params[n->attr.i];
    t = &p->dtype, s = &p->shape, node = p->node;
  } else if (n->op == IR_INPUT || n->op == IR_PARAM) {
    return ir_fail(msg, mn, "verify: node %d (%s) has index %lld outside its table", id,
                ir_ops[n->op].name, (long long)n->attr.i);
  } else if (n->op == IR_CONST && !n->data && n->shape.rank != 0) {
    return ir_fail(msg, mn, "verify: node %d (const) has rank %d but no data", id, n->shape.rank);
  }
  if (!t) return 0;
  char b1[SBUF], b2[SBUF];
  if (node != id)
    return ir_fail(msg, mn, "verify: node %d (%s) is entry %lld, which names node %d", id,
                ir_ops[n->op].name, (long long)n->attr.i, node);
  if (*t != n->dtype || !ir_shape_eq(s, &n->shape))
    return ir_fail(msg, mn, "verify: node %d (%s) is %s but its table entry says %s", id,
                ir_ops[n->op].name, tstr(n->dtype, &n->shape, b1), tstr(*t, s, b2));
  return 0;
}

static int verify_node(const ir_graph *g, int id, char *msg, size_t mn) {
  const ir_node *n = &g->nodes[id];
  char b1[SBUF], b2[SBUF], why[256];
  if (n->op < 0 || n->op >= IR_NOPS)
    return ir_fail(msg, mn, "verify: node %d has unknown op %d", id, n->op);
  const ir_opinfo *oi = &ir_ops[n->op];
  if (!arity_ok(oi->arity, n->nin) || (n->nin > 0 && !n->in))
    return ir_fail(msg, mn, "verify: node %d (%s) has %d inputs", id, oi->name, n->nin);
  for (int k = 0; k < n->nin; k++)
    if (n->in[k] < 0 || n->in[k] >= id)
      return ir_fail(msg, mn, "verify: node %d (%s) input %d is %%%d, not an earlier node", id,
                  oi->name, k, n->in[k]);
  if (ir_numel(&n->shape) < 1)
    return ir_fail(msg, mn, "verify: node %d (%s) has invalid shape %s", id, oi->name,
                tstr(n->dtype, &n->shape, b1));
  if (oi->cat == IR_CAT_LEAF && n->op != IR_ARANGE) return verify_leaf(g, id, msg, mn);
  /* recompute on a copy; rules only read the graph */
  ir_node c = *n;
  if (oi->shape((ir_graph *)g, &c, why, sizeof why))
    return ir_fail(msg, mn, "verify: node %d (%s) no longer type-checks: %s", id, oi->name, why);
  if (c.dtype != n->dtype || !ir_shape_eq(&c.shape, &n->shape))
    return ir_fail(msg, mn, "verify: node %d (%s) stores %s but its inputs give %s", id, oi->name,
                tstr(n->dtype, &n->shape, b1), tstr(c.dtype, &c.shape, b2));
  return 0;
}

/* Each table entry must point at a leaf of the right kind carrying its index. */
static int verify_tables(const ir_graph *g, char *msg, size_t mn) {
  for (int i = 0; i < g->ninputs; i++) {
    int id = g->inputs[i].node;
    if (id < 0 || id >= g->nnodes || g->nodes[id].op != IR_INPUT || g->nodes[id].attr.i != i)
      return ir_fail(msg, mn, "verify: input %d (%s) does not name its input node (%d)", i,
                  g->inputs[i].name ? g->inputs[i].name : "?", id);
  }
  for (int i = 0; i < g->nparams; i++) {
    int id = g->params[i].node;
    if (id < 0 || id >= g->nnodes || g->nodes[id].op != IR_PARAM || g->nodes[id].attr.i != i)
      return ir_fail(msg, mn, "verify: param %d (%s) does not name its param node (%d)", i,
                  g->params[i].name ? g->params[i].name : "?", id);
  }
  for (int i = 0; i < g->noutputs; i++) {
    int id = g->outputs[i].node;
    if (id < 0 || id >= g->nnodes)
      return ir_fail(msg, mn, "verify: output %d (%s) refers to missing node %d", i,
                  g->outputs[i].name ? g->outputs[i].name : "?", id);
  }
  if (g->loss != -1) {
    if (g->loss < 0 || g->loss >= g->nnodes)
      return ir_fail(msg, mn, "verify: loss refers to missing node %d", g->loss);
    const ir_node *l = &g->nodes[g->loss];
    if (l->shape.rank != 0 || !ir_dtype_is_float(l->dtype))
      return ir_fail(msg, mn, "verify: loss node %d is not a float scalar", g->loss);
  }
  return 0;
}

int ir_verify(const ir_graph *g, char *msg, size_t msgn) {
  if (g->nnodes < 0 || (g->nnodes > 0 && !g->nodes) || g->ninputs < 0 || g->nparams < 0 ||
      g->noutputs < 0)
    return ir_fail(msg, msgn, "verify: corrupt graph header");
  for (int id = 0; id < g->nnodes; id++)
    if (verify_node(g, id, msg, msgn)) return -1;
  return verify_tables(g, msg, msgn);
}

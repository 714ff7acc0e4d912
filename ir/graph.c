/* graph.c -- building the static graph: leaves, ops (checked by their shape
 * rule), outputs, and look-ups by name. Arrays grow by doubling inside the
 * arena (the old copy stays in the arena until ar_free), so the graph owns no
 * malloc'd memory of its own. Pointers into g->nodes are invalidated by the
 * next append; keep node ids, not pointers. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ir.h"

/* Make room for one more element of size `sz` in *arr (count n, capacity *cap). */
static void grow(arena *A, void **arr, int n, int *cap, size_t sz) {
  if (n < *cap) return;
  if (*cap > (1 << 28)) IR_UNREACHABLE("graph too large");
  int nc = *cap ? *cap * 2 : 16;
  void *p = ar_alloc(A, sz * (size_t)nc);
  if (n) memcpy(p, *arr, sz * (size_t)n);
  *arr = p;
  *cap = nc;
}
#define GROW(g, arr, n, cap) grow((g)->A, (void **)&(g)->arr, (g)->n, &(g)->cap, sizeof *(g)->arr)

static void train_unset(ir_train *t) {
  memset(t, 0, sizeof *t);
  t->opt = IR_OPT_NONE;
  t->lr = t->momentum = t->beta1 = t->beta2 = t->eps = t->weight_decay = t->alpha = NAN;
  t->nesterov = -1;
  t->sched = IR_SCHED_CONSTANT;
  t->sched_every = t->sched_gamma = t->sched_warmup = t->sched_min_lr = NAN;
  t->epochs = t->batch = t->early_stop = t->seed = -1;
  t->init = IR_INIT_NORMAL;
  t->init_std = NAN;
  t->l1 = t->l2 = t->clip_norm = t->grad_noise = NAN;
  t->split[0] = t->split[1] = t->split[2] = NAN;
}

void ir_graph_init(ir_graph *g, arena *A, const char *model_name) {
  memset(g, 0, sizeof *g);
  g->A = A;
  g->model_name = ar_strdup(A, model_name ? model_name : "model");
  g->loss = -1;
  train_unset(&g->train);
}

static int push_node(ir_graph *g, const ir_node *n) {
  GROW(g, nodes, nnodes, capnodes);
  g->nodes[g->nnodes] = *n;
  return g->nnodes++;
}

static int arity_ok(int arity, int nin) {
  if (arity == -1) return nin >= 1;
  if (arity == -2) return nin == 2 || nin == 3;
  return nin == arity;
}

static int arity_fail(const char *op, int arity, int nin, char *msg, size_t mn) {
  if (arity == -1) return ir_fail(msg, mn, "%s: expects at least 1 input, got %d", op, nin);
  if (arity == -2) return ir_fail(msg, mn, "%s: expects 2 or 3 inputs, got %d", op, nin);
  return ir_fail(msg, mn, "%s: expects %d input%s, got %d", op, arity, arity == 1 ? "" : "s", nin);
}

int ir_add(ir_graph *g, int op, const int *in, int nin, const ir_attr *attr, ir_loc loc,
           char *msg, size_t msgn) {
  if (op < 0 || op >= IR_NOPS) return ir_fail(msg, msgn, "ir_add: unknown op %d", op);
  const ir_opinfo *oi = &ir_ops[op];
  if (op == IR_INPUT || op == IR_PARAM || op == IR_CONST)
    return ir_fail(msg, msgn, "%s: leaves are created with ir_add_%s", oi->name, oi->name);
  if (!arity_ok(oi->arity, nin) || (nin > 0 && !in))
    return arity_fail(oi->name, oi->arity, nin, msg, msgn);
  for (int k = 0; k < nin; k++)
    if (in[k] < 0 || in[k] >= g->nnodes)
      return ir_fail(msg, msgn, "%s: input %d refers to node %d, which does not exist (graph has %d)",
                  oi->name, k, in[k], g->nnodes);
  ir_node n = {.op = op, .nin = nin, .in = (int *)in, .loc = loc};
  if (attr) n.attr = *attr;
  if (oi->shape(g, &n, msg, msgn)) return -1;
  if (ir_numel(&n.shape) < 0) {
    char b[200];
    return ir_fail(msg, msgn, "%s: result %s has more than %lld elements", oi->name,
                ir_shape_str(&n.shape, b, sizeof b), (long long)IR_MAX_ELEMS);
  }
  n.in = ar_alloc(g->A, sizeof(int) * (size_t)(nin ? nin : 1));
  if (nin) memcpy(n.in, in, sizeof(int) * (size_t)nin);
  return push_node(g, &n);
}

static int leaf(ir_graph *g, int op, ir_dtype t, const ir_shape *s, const char *name, int idx,
                ir_loc loc) {
  ir_node n = {.op = op, .dtype = t, .shape = *s, .name = name, .loc = loc};
  n.in = ar_alloc(g->A, sizeof(int));
  n.attr.i = idx;
  return push_node(g, &n);
}

static int leaf_ok(ir_dtype t, const ir_shape *s) {
  return (int)t >= 0 && t < IR_NDTYPES && s && ir_numel(s) >= 1;
}

/* -1 when the dtype or shape is invalid (rank, a dimension < 1, too many
 * elements); the frontend reports that before it gets here. */
int ir_add_input(ir_graph *g, const char *name, ir_dtype t, const ir_shape *s, int is_target,
                 ir_loc loc) {
  if (!leaf_ok(t, s)) return -1;
  GROW(g, inputs, ninputs, capinputs);
  ir_input *in = &g->inputs[g->ninputs];
  in->name = ar_strdup(g->A, name);
  in->dtype = t;
  in->shape = *s;
  in->is_target = is_target;
  in->node = leaf(g, IR_INPUT, t, s, in->name, g->ninputs, loc);
  return g->inputs[g->ninputs++].node;
}

int ir_add_param(ir_graph *g, const char *name, ir_dtype t, const ir_shape *s, ir_init init,
                 double std, int64_t fan_in, int64_t fan_out, ir_loc loc) {
  if (!leaf_ok(t, s)) return -1;
  GROW(g, params, nparams, capparams);
  ir_param *p = &g->params[g->nparams];
  p->name = ar_strdup(g->A, name);
  p->dtype = t;
  p->shape = *s;
  p->init = init;
  p->std = std;
  p->fan_in = fan_in;
  p->fan_out = fan_out;
  p->full = (ir_shape){0}, p->shard_off = 0;
  p->node = leaf(g, IR_PARAM, t, s, p->name, g->nparams, loc);
  return g->params[g->nparams++].node;
}

/* A scalar constant. A non-scalar constant is made by setting the node's
 * shape and data (numel values) right after this call. */
int ir_add_const(ir_graph *g, ir_dtype t, double value, ir_loc loc) {
  ir_shape s = {0};
  if ((int)t < 0 || t >= IR_NDTYPES) return -1;
  int id = leaf(g, IR_CONST, t, &s, NULL, 0, loc);
  g->nodes[id].attr.f = value;
  return id;
}

void ir_add_output(ir_graph *g, const char *name, int node) {
  GROW(g, outputs, noutputs, capoutputs);
  g->outputs[g->noutputs].name = ar_strdup(g->A, name);
  g->outputs[g->noutputs].node = node;
  g->noutputs++;
}

static int same(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

int ir_find_param(const ir_graph *g, const char *name) {
  for (int i = 0; i < g->nparams; i++)
    if (same(g->params[i].name, name)) return i;
  return -1;
}

int ir_find_input(const ir_graph *g, const char *name) {
  for (int i = 0; i < g->ninputs; i++)
    if (same(g->inputs[i].name, name)) return i;
  return -1;
}

int ir_find_output(const ir_graph *g, const char *name) {
  for (int i = 0; i < g->noutputs; i++)
    if (same(g->outputs[i].name, name)) return i;
  return -1;
}

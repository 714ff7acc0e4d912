/* stage.c -- cutting a forward graph into pipeline stages (stage.h). The
 * graph's node order is topological, so a stage is a range of node ids:
 * stage s holds the computed nodes in (cut[s - 1], cut[s]]; a cut is valid
 * when one value alone crosses it (see stage.h). */
#include <stdlib.h>
#include <string.h>

#include "passes/stage.h"

static int is_leaf(int op) { return op == IR_INPUT || op == IR_PARAM || op == IR_CONST; }

typedef struct {
  const ir_graph *g;
  char *live;     /* reaches a sink */
  int *last;      /* last live consumer (nnodes for a sink), -1: none */
  int *first;     /* first live consumer, nnodes: none */
} st_uses;

static int uses_make(const ir_graph *g, int train, st_uses *u) {
  int n = g->nnodes;
  u->g = g;
  u->live = calloc((size_t)n + 1, 1);
  u->last = malloc(sizeof(int) * ((size_t)n + 1));
  u->first = malloc(sizeof(int) * ((size_t)n + 1));
  if (!u->live || !u->last || !u->first) return -1;
  for (int i = 0; i < n; i++) u->last[i] = -1, u->first[i] = n;
  if (train) u->live[g->loss] = 1, u->last[g->loss] = n;
  for (int o = 0; !train && o < g->noutputs; o++) u->live[g->outputs[o].node] = 1, u->last[g->outputs[o].node] = n;
  for (int id = n - 1; id >= 0; id--) {
    if (!u->live[id]) continue;
    for (int k = 0; k < g->nodes[id].nin; k++) {
      int x = g->nodes[id].in[k];
      u->live[x] = 1;
      if (u->last[x] < id) u->last[x] = id;
      if (u->first[x] > id) u->first[x] = id;
    }
  }
  return 0;
}

static void uses_free(st_uses *u) {
  free(u->live), free(u->last), free(u->first);
}

/* A parameter's layer: its name up to the last '.' (the whole name if none). */
static size_t layer_len(const char *name) {
  const char *d = strrchr(name, '.');
  return d ? (size_t)(d - name) : strlen(name);
}

/* Whether a layer (the parameters sharing p's layer) is used on both sides of c. */
static int layer_split(const st_uses *u, int p, int c) {
  const ir_graph *g = u->g;
  const char *a = g->params[p].name;
  size_t la = layer_len(a);
  int lo = g->nnodes, hi = -1;
  for (int q = 0; q < g->nparams; q++) {
    const char *b = g->params[q].name;
    if (layer_len(b) != la || strncmp(a, b, la)) continue;
    int nd = g->params[q].node;
    if (u->first[nd] < lo) lo = u->first[nd];
    if (u->last[nd] > hi) hi = u->last[nd];
  }
  return lo <= c && hi > c;
}

/* The one value crossing a cut after c, or -1 when the cut is not valid. */
static int crossing(const st_uses *u, int c) {
  const ir_graph *g = u->g;
  int x = -1;
  for (int id = 0; id <= c; id++) {
    if (!u->live[id] || u->last[id] <= c) continue;
    if (g->nodes[id].op == IR_PARAM && layer_split(u, g->nodes[id].attr.i, c)) return -1;
    if (is_leaf(g->nodes[id].op)) continue;
    if (x >= 0) return -1;
    x = id;
  }
  for (int p = 0; p < g->nparams; p++) /* a layer whose parameters all lie on one side may still be cut between */
    if (u->live[g->params[p].node] && layer_split(u, p, c)) return -1;
  if (x < 0 || !ir_dtype_is_float(g->nodes[x].dtype)) return -1;
  return x;
}

int st_plan_make(const ir_graph *g, int k, int train, st_plan *pl, char *msg, size_t msgn) {
  memset(pl, 0, sizeof *pl);
  if (k < 2 || k > ST_MAX) return ir_fail(msg, msgn, "--pipeline %d: give 2 to %d stages", k, ST_MAX);
  if (train && g->loss < 0) return ir_fail(msg, msgn, "--pipeline: the model has no loss to train");
  st_uses u = {0};
  int n = g->nnodes, rc = 0;
  int64_t *pre = malloc(sizeof(int64_t) * ((size_t)n + 1));
  int *valid = malloc(sizeof(int) * ((size_t)n + 1)), *act = malloc(sizeof(int) * ((size_t)n + 1)), nv = 0;
  if (!pre || !valid || !act || uses_make(g, train, &u)) {
    free(pre), free(valid), free(act);
    uses_free(&u);
    return ir_fail(msg, msgn, "--pipeline: out of memory");
  }
  int64_t tot = 0;
  for (int id = 0; id < n; id++) {
    if (u.live[id] && !is_leaf(g->nodes[id].op)) tot += ir_node_flops(g, id);
    pre[id] = tot;
    int x = u.live[id] && !is_leaf(g->nodes[id].op) && u.last[id] < n ? crossing(&u, id) : -1;
    if (x >= 0) valid[nv] = id, act[nv++] = x;
  }
  if (nv < k - 1) {
    rc = ir_fail(msg, msgn, "--pipeline %d: the model has %d layer boundar%s to cut at, so at most %d stages", k, nv,
                 nv == 1 ? "y" : "ies", nv + 1);
  } else {
    pl->k = k;
    int from = 0;
    for (int j = 1; j < k; j++) { /* the cut nearest j/k of the FLOPs, leaving enough cuts for the rest */
      double target = (double)tot * j / k;
      int best = from, last = nv - (k - 1 - j) - 1;
      for (int v = from; v <= last; v++) {
        double d = (double)pre[valid[v]] - target, db = (double)pre[valid[best]] - target;
        if ((d < 0 ? -d : d) < (db < 0 ? -db : db)) best = v;
      }
      pl->cut[j - 1] = valid[best], pl->act[j - 1] = act[best];
      from = best + 1;
    }
    for (int s = 0; s < k; s++) {
      int64_t lo = s ? pre[pl->cut[s - 1]] : 0, hi = s < k - 1 ? pre[pl->cut[s]] : tot;
      pl->flops[s] = hi - lo;
    }
  }
  free(pre), free(valid), free(act);
  uses_free(&u);
  return rc;
}

/* ---- extraction ---- */

static int clone_leaf(ir_graph *ng, const ir_graph *g, int id) {
  const ir_node *n = &g->nodes[id];
  if (n->op == IR_INPUT) {
    const ir_input *in = &g->inputs[n->attr.i];
    return ir_add_input(ng, in->name, in->dtype, &in->shape, in->is_target, n->loc);
  }
  if (n->op == IR_PARAM) {
    const ir_param *p = &g->params[n->attr.i];
    int nd = ir_add_param(ng, p->name, p->dtype, &p->shape, p->init, p->std, p->fan_in, p->fan_out, n->loc);
    if (nd >= 0) {
      ir_param *q = &ng->params[ng->nparams - 1];
      q->state = p->state, q->buffer = p->buffer, q->stored = p->stored;
      q->from_quant = p->from_quant, q->kept_why = p->kept_why;
    }
    return nd;
  }
  int nd = ir_add_const(ng, n->dtype, n->attr.f, n->loc);
  if (nd >= 0) {
    ng->nodes[nd].shape = n->shape;
    ng->nodes[nd].data = n->data;
    ng->nodes[nd].attr = n->attr;
    ng->nodes[nd].name = n->name;
  }
  return nd;
}

/* The nodes of (lo, hi] that lead to the stage's sinks. */
static char *needed(const ir_graph *g, int lo, int hi, const int *sink, int nsink) {
  char *need = calloc((size_t)g->nnodes + 1, 1);
  if (!need) return NULL;
  for (int i = 0; i < nsink; i++) need[sink[i]] = 1;
  for (int id = hi; id > lo; id--)
    if (need[id] && !is_leaf(g->nodes[id].op))
      for (int k = 0; k < g->nodes[id].nin; k++) need[g->nodes[id].in[k]] = 1;
  return need;
}

static int copy_nodes(ir_graph *ng, const ir_graph *g, int lo, int hi, const char *need, int *map, char *msg,
                      size_t msgn) {
  int ins[64];
  for (int id = lo + 1; id <= hi; id++) {
    const ir_node *n = &g->nodes[id];
    if (!need[id] || is_leaf(n->op)) continue;
    if (n->nin > (int)(sizeof ins / sizeof ins[0])) return ir_fail(msg, msgn, "--pipeline: a node of %d inputs", n->nin);
    for (int k = 0; k < n->nin; k++) {
      int x = n->in[k];
      if (map[x] < 0 && is_leaf(g->nodes[x].op)) map[x] = clone_leaf(ng, g, x);
      if (map[x] < 0) return ir_fail(msg, msgn, "internal error: --pipeline: node %d of the stage reads node %d", id, x);
      ins[k] = map[x];
    }
    map[id] = ir_add(ng, n->op, ins, n->nin, &n->attr, n->loc, msg, msgn);
    if (map[id] < 0) return -1;
    ng->nodes[map[id]].name = n->name;
  }
  return 0;
}

/* The op recv of a tensor shaped like node a, from rank peer. */
static int recv_like(ir_graph *g, const ir_node *a, int peer, char *msg, size_t msgn) {
  ir_attr at = {0};
  at.n = peer, at.nlist = a->shape.rank;
  for (int j = 0; j < a->shape.rank; j++) at.list[j] = a->shape.d[j];
  return ir_add(g, IR_RECV, NULL, 0, &at, a->loc, msg, msgn);
}

static int send_to(ir_graph *g, int x, int peer, char *msg, size_t msgn) {
  ir_attr at = {0};
  at.n = peer;
  return ir_add(g, IR_SEND, &x, 1, &at, g->nodes[x].loc, msg, msgn);
}

int st_send_output(ir_graph *g, const char *name, int peer, char *msg, size_t msgn) {
  int o = ir_find_output(g, name);
  if (o < 0) return ir_fail(msg, msgn, "internal error: --pipeline: no output %s", name);
  int x = send_to(g, g->outputs[o].node, peer, msg, msgn);
  if (x < 0) return -1;
  g->outputs[o].node = x;
  return 0;
}

int st_extract(ir_graph *g, const st_plan *pl, int s, int flags, char *msg, size_t msgn) {
  int train = flags & ST_TRAIN, p2p = flags & ST_P2P;
  if (s < 0 || s >= pl->k) return ir_fail(msg, msgn, "internal error: stage %d of %d", s, pl->k);
  int last = s == pl->k - 1, lo = s ? pl->cut[s - 1] : -1, hi = last ? g->nnodes - 1 : pl->cut[s];
  int nsink = 0, *sink = malloc(sizeof(int) * ((size_t)g->noutputs + 2)), *map = malloc(sizeof(int) * ((size_t)g->nnodes + 1));
  if (sink && !last) sink[nsink++] = pl->act[s];
  else if (sink && train) sink[nsink++] = g->loss;
  else
    for (int o = 0; sink && o < g->noutputs; o++) sink[nsink++] = g->outputs[o].node;
  int keep_loss = last && !train && (flags & ST_KEEP_LOSS) && g->loss >= 0;
  if (sink && keep_loss) sink[nsink++] = g->loss;
  char *need = sink ? needed(g, lo, hi, sink, nsink) : NULL;
  if (!need || !map) {
    free(sink), free(map), free(need);
    return ir_fail(msg, msgn, "--pipeline: out of memory");
  }
  for (int i = 0; i < g->nnodes; i++) map[i] = -1;
  ir_graph ng;
  ir_graph_init(&ng, g->A, g->model_name);
  const ir_node *a = s > 0 ? &g->nodes[pl->act[s - 1]] : NULL;
  if (a && p2p) map[pl->act[s - 1]] = recv_like(&ng, a, s - 1, msg, msgn);
  else if (a) map[pl->act[s - 1]] = ir_add_param(&ng, ST_ACT_IN, a->dtype, &a->shape, IR_INIT_ZEROS, 0, 0, 0, a->loc);
  int rc = a && map[pl->act[s - 1]] < 0 ? -1 : copy_nodes(&ng, g, lo, hi, need, map, msg, msgn);
  int out = rc || last ? -1 : p2p ? send_to(&ng, map[pl->act[s]], s + 1, msg, msgn) : map[pl->act[s]];
  if (rc == 0 && !last && out < 0) rc = -1;
  if (rc == 0) {
    if (a && p2p) ir_add_output(&ng, ST_ACT_IN, map[pl->act[s - 1]]);
    if (!last) ir_add_output(&ng, ST_ACT_OUT, out);
    else if (train) ng.loss = map[g->loss];
    else
      for (int o = 0; o < g->noutputs; o++) ir_add_output(&ng, g->outputs[o].name, map[g->outputs[o].node]);
    if (keep_loss) ng.loss = map[g->loss];
    ng.train = g->train, ng.no_fusion = g->no_fusion, ng.quant = g->quant;
    *g = ng;
  }
  free(sink), free(map), free(need);
  return rc;
}

int st_receiver(ir_graph *g, const st_plan *pl, int s, char *msg, size_t msgn) {
  if (s < 1 || s >= pl->k)
    return ir_fail(msg, msgn, "internal error: --pipeline: stage %d of %d receives nothing", s, pl->k);
  ir_graph ng;
  ir_graph_init(&ng, g->A, g->model_name);
  int r = recv_like(&ng, &g->nodes[pl->act[s - 1]], s - 1, msg, msgn);
  if (r < 0) return -1;
  ir_add_output(&ng, ST_ACT_IN, r);
  ng.train = g->train, ng.no_fusion = g->no_fusion, ng.quant = g->quant;
  *g = ng;
  return 0;
}

int st_surrogate_loss(ir_graph *g, int peer, char *msg, size_t msgn) {
  int o = ir_find_output(g, ST_ACT_OUT);
  if (o < 0) return ir_fail(msg, msgn, "internal error: --pipeline: the stage has no %s", ST_ACT_OUT);
  int act = g->outputs[o].node;
  ir_node a = g->nodes[act];
  int gout = peer >= 0 ? recv_like(g, &a, peer, msg, msgn) : ir_add_input(g, ST_GOUT, a.dtype, &a.shape, 0, a.loc);
  int ab[2] = {act, gout};
  int m = gout < 0 ? -1 : ir_add(g, IR_MUL, ab, 2, NULL, a.loc, msg, msgn);
  ir_attr all = {0};
  all.axis = -1;
  int l = m < 0 ? -1 : ir_add(g, IR_SUM, &m, 1, &all, a.loc, msg, msgn);
  if (l < 0) return -1;
  g->loss = l;
  g->noutputs = 0;
  return 0;
}

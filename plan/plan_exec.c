/* plan_exec.c -- the plan's reference executor: every kernel of the plan in
 * its order, each member computed by the interpreter's kernel
 * (ir_interp_node), every tensor kept where the plan puts it and at its
 * dtype's width: one arena with the plan's offsets (aliases and in-place
 * results included), the constants, one buffer per output; inputs and
 * parameters are the caller's. A kernel reads its inputs from their buffers
 * when it starts and stores its results when it ends, so a plan that lets a
 * tensor's bytes be taken while it is still to be read shows up as values
 * that differ from the unplanned interpreter's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/plan.h"

typedef struct {
  const pl_plan *p;
  double **vals;     /* the caller's: inputs and parameters */
  double **tv;       /* per node, during a kernel: its values (loaded or computed) */
  char *own;         /* per node: tv[i] is ours to free */
  unsigned char *arena, *consts, **outs;
  char *msg;
  size_t msgn;
} ex_ctx;

static int ex_fail(ex_ctx *x, const char *fmt, int i) {
  char a[160];
  if (x->msg && x->msgn) snprintf(x->msg, x->msgn, fmt, pl_tensor_name(x->p->g, i, a, sizeof a));
  return -1;
}

/* The bytes of node i's buffer (following aliases), NULL for the caller's
 * inputs and parameters and for values that have no buffer. */
static unsigned char *ex_addr(ex_ctx *x, int i) {
  const pl_buf *b = &x->p->buf[i];
  for (int hops = 0; b->kind == PL_BUF_ALIAS && hops < x->p->g->nnodes; hops++) b = &x->p->buf[b->idx];
  switch (b->kind) {
  case PL_BUF_ARENA: return x->arena + b->off;
  case PL_BUF_CONST: return x->consts + b->off;
  case PL_BUF_OUTPUT: return x->outs[b->idx];
  default: return NULL;
  }
}

static void ex_store(unsigned char *p, ir_dtype t, const double *v, int64_t n) {
  for (int64_t e = 0; e < n; e++) switch (t) {
    case IR_F32: ((float *)p)[e] = (float)v[e]; break;
    case IR_I32: ((int32_t *)p)[e] = (int32_t)v[e]; break;
    case IR_I64: ((int64_t *)p)[e] = (int64_t)v[e]; break;
    case IR_I8: ((int8_t *)p)[e] = (int8_t)v[e]; break;
    default: ((uint8_t *)p)[e] = (uint8_t)v[e]; break; /* u8, bool */
    }
}

static void ex_load(const unsigned char *p, ir_dtype t, double *v, int64_t n) {
  for (int64_t e = 0; e < n; e++) switch (t) {
    case IR_F32: v[e] = ((const float *)p)[e]; break;
    case IR_I32: v[e] = ((const int32_t *)p)[e]; break;
    case IR_I64: v[e] = (double)((const int64_t *)p)[e]; break;
    case IR_I8: v[e] = ((const int8_t *)p)[e]; break;
    default: v[e] = ((const uint8_t *)p)[e]; break;
    }
}

/* tv[i] := node i's values as its buffer holds them now. */
static int ex_read(ex_ctx *x, int i) {
  const ir_node *n = &x->p->g->nodes[i];
  if (n->op == IR_INPUT || n->op == IR_PARAM) {
    x->tv[i] = x->vals[i];
    return x->tv[i] ? 0 : ex_fail(x, "plan executor: no value given for %s", i);
  }
  unsigned char *at = ex_addr(x, i);
  if (!at) return ex_fail(x, "plan executor: %s is read but has no buffer", i);
  int64_t cnt = ir_numel(&n->shape);
  x->tv[i] = malloc(sizeof(double) * (size_t)(cnt ? cnt : 1));
  if (!x->tv[i]) return ex_fail(x, "plan executor: out of memory for %s", i);
  x->own[i] = 1;
  ex_load(at, n->dtype, x->tv[i], cnt);
  return 0;
}

static void ex_drop(ex_ctx *x, int i) {
  if (x->own[i]) free(x->tv[i]);
  x->tv[i] = NULL, x->own[i] = 0;
}

/* One kernel: read what it reads, compute its members in order, store. */
static int ex_kernel(ex_ctx *x, const pl_kernel *k) {
  const ir_graph *g = x->p->g;
  int rc = 0;
  for (int j = 0; j < k->nin && !rc; j++)
    if (!x->tv[k->in[j]]) rc = ex_read(x, k->in[j]);
  for (int m = 0; m < k->nmember && !rc; m++) {
    int i = k->member[m];
    const ir_node *n = &g->nodes[i];
    for (int j = 0; j < n->nin && !rc; j++) /* pl_verify says why; here: no reference kernel on NULL */
      if (!x->tv[n->in[j]]) rc = ex_fail(x, "plan executor: a kernel computes from %s, which it does not read", n->in[j]);
    if (rc) break;
    int64_t cnt = ir_numel(&g->nodes[i].shape);
    x->tv[i] = calloc((size_t)(cnt ? cnt : 1), sizeof(double));
    x->own[i] = 1;
    if (!x->tv[i]) rc = ex_fail(x, "plan executor: out of memory for %s", i);
    else rc = ir_interp_node(g, IR_INTERP_F32, x->tv, i, x->tv[i], x->msg, x->msgn);
  }
  for (int j = 0; j < k->nout && !rc; j++) {
    int t = k->out[j];
    unsigned char *at = ex_addr(x, t);
    if (!at) rc = ex_fail(x, "plan executor: %s is stored but has no buffer", t);
    else ex_store(at, g->nodes[t].dtype, x->tv[t], ir_numel(&g->nodes[t].shape));
  }
  for (int j = 0; j < k->nin; j++) ex_drop(x, k->in[j]);
  for (int m = 0; m < k->nmember; m++) ex_drop(x, k->member[m]);
  return rc;
}

/* The constants, as the program holds them. */
static int ex_consts(ex_ctx *x) {
  const ir_graph *g = x->p->g;
  for (int i = 0; i < g->nnodes; i++) {
    if (x->p->buf[i].kind != PL_BUF_CONST) continue;
    int64_t cnt = ir_numel(&g->nodes[i].shape);
    double *v = calloc((size_t)(cnt ? cnt : 1), sizeof(double));
    if (!v) return ex_fail(x, "plan executor: out of memory for %s", i);
    int rc = ir_interp_node(g, IR_INTERP_F32, x->vals, i, v, x->msg, x->msgn);
    if (!rc) ex_store(x->consts + x->p->buf[i].off, g->nodes[i].dtype, v, cnt);
    free(v);
    if (rc) return -1;
  }
  return 0;
}

static int caller_owned(const ir_graph *g, int i) { return g->nodes[i].op == IR_INPUT || g->nodes[i].op == IR_PARAM; }

/* vals[i] := a copy of node i's final value (an output, the loss). */
static int ex_result(ex_ctx *x, int i) {
  if (x->vals[i] || caller_owned(x->p->g, i)) return 0;
  if (ex_read(x, i)) return -1;
  x->vals[i] = x->tv[i];
  x->tv[i] = NULL, x->own[i] = 0;
  return 0;
}

static int ex_run(ex_ctx *x) {
  const pl_plan *p = x->p;
  const ir_graph *g = p->g;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].dtype == IR_F16 || g->nodes[i].dtype == IR_BF16)
      return ex_fail(x, "plan executor: %s is f16/bf16, which it does not store", i);
  if (ex_consts(x)) return -1;
  for (int q = 0; q < p->nk; q++)
    if (ex_kernel(x, &p->k[q])) return -1;
  for (int j = 0; j < g->noutputs; j++)
    if (ex_result(x, g->outputs[j].node)) return -1;
  return g->loss >= 0 ? ex_result(x, g->loss) : 0;
}

int pl_exec(const pl_plan *p, double **vals, char *msg, size_t msgn) {
  const ir_graph *g = p->g;
  size_t nn = (size_t)(g->nnodes ? g->nnodes : 1);
  ex_ctx x = {p, vals, calloc(nn, sizeof(double *)), calloc(nn, 1), calloc((size_t)p->arena_bytes + 64, 1),
              calloc((size_t)p->const_bytes + 64, 1), calloc((size_t)g->noutputs + 1, sizeof(unsigned char *)),
              msg, msgn};
  if (msg && msgn) msg[0] = '\0';
  for (int i = 0; i < g->nnodes; i++)
    if (!caller_owned(g, i)) vals[i] = NULL;
  int rc = x.tv && x.own && x.arena && x.consts && x.outs ? 0 : -1;
  for (int j = 0; !rc && j < g->noutputs; j++) {
    const ir_node *n = &g->nodes[g->outputs[j].node];
    x.outs[j] = calloc((size_t)(ir_numel(&n->shape) + 1) * ir_dtype_size(n->dtype), 1);
    if (!x.outs[j]) rc = -1;
  }
  if (rc) {
    if (msg && msgn) snprintf(msg, msgn, "plan executor: out of memory");
  } else {
    rc = ex_run(&x);
  }
  for (int i = 0; x.tv && x.own && i < g->nnodes; i++) ex_drop(&x, i);
  for (int j = 0; x.outs && j < g->noutputs; j++) free(x.outs[j]);
  free(x.tv), free(x.own), free(x.arena), free(x.consts), free(x.outs);
  if (rc) ir_interp_release(g, vals);
  return rc;
}

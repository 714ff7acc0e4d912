/* shape_comm.c -- shape rules of the collectives (allreduce, reduce_scatter,
 * all_gather; ops.def). The rank count n is an attribute: a program is
 * compiled for one job size, so every shape stays static. Same contract as
 * shape.c. */
#include <math.h>
#include <stdio.h>

#include "ir.h"

#define SBUF 200

static int ranks_ok(const ir_node *n, char *msg, size_t mn) {
  if (n->attr.n < 1 || n->attr.n > (1 << 20))
    return ir_fail(msg, mn, "%s: ranks (n) must be in 1..%d, got %lld", ir_ops[n->op].name, 1 << 20,
                   (long long)n->attr.n);
  return 0;
}

static int scale_ok(const ir_node *n, char *msg, size_t mn) {
  if (!isfinite(n->attr.f))
    return ir_fail(msg, mn, "%s: the scale (f) must be finite, got %g", ir_ops[n->op].name, n->attr.f);
  return 0;
}

static int f32_in(const ir_graph *g, const ir_node *n, int k, char *msg, size_t mn) {
  const ir_node *x = &g->nodes[n->in[k]];
  if (x->dtype == IR_F32) return 0;
  return ir_fail(msg, mn, "%s: input %d must be f32, got %s", ir_ops[n->op].name, k, ir_dtype_name(x->dtype));
}

static void flat(ir_node *n, int64_t len) {
  n->dtype = IR_F32;
  n->shape = (ir_shape){.rank = 1, .d = {len}};
}

int shp_allreduce(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  if (ranks_ok(n, msg, mn) || scale_ok(n, msg, mn)) return -1;
  int64_t total = 0;
  for (int k = 0; k < n->nin; k++) {
    if (f32_in(g, n, k, msg, mn)) return -1;
    total += ir_numel(&g->nodes[n->in[k]].shape);
  }
  flat(n, total);
  return 0;
}

int shp_reduce_scatter(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  if (ranks_ok(n, msg, mn) || scale_ok(n, msg, mn) || f32_in(g, n, 0, msg, mn)) return -1;
  const ir_shape *s = &g->nodes[n->in[0]].shape;
  char b[SBUF];
  if (s->rank != 1 || s->d[0] % n->attr.n)
    return ir_fail(msg, mn, "reduce_scatter: input must be f32[m * %lld] (a multiple of the ranks), got %s",
                   (long long)n->attr.n, ir_shape_str(s, b, sizeof b));
  flat(n, s->d[0] / n->attr.n);
  return 0;
}

int shp_all_gather(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  if (ranks_ok(n, msg, mn) || f32_in(g, n, 0, msg, mn)) return -1;
  const ir_shape *s = &g->nodes[n->in[0]].shape;
  char b[SBUF];
  if (s->rank != 1) return ir_fail(msg, mn, "all_gather: input must be f32[m], got %s", ir_shape_str(s, b, sizeof b));
  flat(n, s->d[0] * n->attr.n);
  return 0;
}

int shp_comm_wait(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = &g->nodes[n->in[0]];
  if (x->op != IR_ALLREDUCE || x->attr.k != 1)
    return ir_fail(msg, mn, "comm_wait: the input must be an allreduce started with k = 1, got %s", ir_ops[x->op].name);
  flat(n, ir_numel(&x->shape));
  return 0;
}

/* Point to point (pipeline stages): the peer is a rank, not a count. */
static int peer_ok(const ir_node *n, char *msg, size_t mn) {
  if (n->attr.n < 0 || n->attr.n >= (1 << 20))
    return ir_fail(msg, mn, "%s: the peer rank (n) must be in 0..%d, got %lld", ir_ops[n->op].name, (1 << 20) - 1,
                   (long long)n->attr.n);
  return 0;
}

int shp_send(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  if (peer_ok(n, msg, mn) || f32_in(g, n, 0, msg, mn)) return -1;
  n->dtype = IR_F32;
  n->shape = g->nodes[n->in[0]].shape;
  return 0;
}

int shp_recv(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  (void)g;
  if (peer_ok(n, msg, mn)) return -1;
  if (n->attr.nlist < 0 || n->attr.nlist > IR_MAXDIM)
    return ir_fail(msg, mn, "recv: the shape (list) must have 0 to %d dimensions, got %d", IR_MAXDIM, n->attr.nlist);
  n->dtype = IR_F32;
  n->shape = (ir_shape){.rank = n->attr.nlist};
  for (int j = 0; j < n->attr.nlist; j++) {
    if (n->attr.list[j] < 1) return ir_fail(msg, mn, "recv: dimension %d is %lld", j, (long long)n->attr.list[j]);
    n->shape.d[j] = n->attr.list[j];
  }
  return 0;
}

/* comm.c -- data-parallel gradients: in a training step compiled for a job
 * of R > 1 ranks (ir_train.ranks), every trainable parameter's gradient is
 * replaced by its average over the ranks before clipping, penalties and the
 * update read it (opt_append calls this first), so every rank applies the
 * same update to the same weights. Each rank's loss is the mean over its
 * own B / R rows of a global batch of B, so the average of the R gradients
 * is the gradient of the global batch's mean loss.
 *
 * Gradients go in buckets, in the order they become final (their node ids:
 * the graph is in execution order), each bucket at most about bucket_bytes
 * (COMM_BUCKET_DEFAULT: 1 MiB) and CG_MAXARGS-bound in tensors: one
 * allreduce node per bucket (scale 1 / R), its flat result unpacked with
 * slice + reshape. Fewer, larger messages amortise the collective's
 * latency; the bucket size is the knob. */
#include <stdio.h>

#include "passes/comm.h"

static const ir_loc no_loc = {0};

static int node_op(ir_graph *g, int op, const int *in, int nin, const ir_attr *at, char *msg, size_t msgn) {
  char why[256];
  int id = ir_add(g, op, in, nin, at, no_loc, why, sizeof why);
  if (id < 0) snprintf(msg, msgn, "comm: %s", why);
  return id;
}

/* The gradient's slice [off, off + numel) of the bucket's result, shaped as the gradient. */
static int unpack(ir_graph *g, int ar, int64_t off, const ir_shape *s, char *msg, size_t msgn) {
  ir_attr sl = {0};
  sl.axis = 0, sl.start = off, sl.end = off + ir_numel(s);
  int id = node_op(g, IR_SLICE, &ar, 1, &sl, msg, msgn);
  if (id < 0 || (s->rank == 1)) return id;
  ir_attr rs = {0};
  rs.nlist = s->rank;
  for (int d = 0; d < s->rank; d++) rs.list[d] = s->d[d];
  return node_op(g, IR_RESHAPE, &id, 1, &rs, msg, msgn);
}

int comm_average_grads(ir_graph *g, int *gr, int nw, int64_t ranks, int64_t bucket_bytes, char *msg, size_t msgn) {
  if (ranks <= 1 || nw == 0) return 0;
  if (bucket_bytes <= 0) bucket_bytes = COMM_BUCKET_DEFAULT;
  /* order: by gradient node id, the order the backward finishes them */
  int *ord = ar_alloc(g->A, sizeof(int) * (size_t)nw);
  for (int w = 0; w < nw; w++) ord[w] = w;
  for (int i = 1; i < nw; i++) /* insertion sort: stable, a few hundred entries */
    for (int j = i; j > 0 && gr[ord[j - 1]] > gr[ord[j]]; j--) {
      int t = ord[j];
      ord[j] = ord[j - 1], ord[j - 1] = t;
    }
  ir_attr at = {0};
  at.n = ranks, at.f = 1.0 / (double)ranks;
  int buckets = 0;
  for (int lo = 0; lo < nw;) {
    int hi = lo;
    int64_t bytes = 0;
    int in[COMM_MAX_BUCKET];
    while (hi < nw && hi - lo < COMM_MAX_BUCKET) {
      int64_t b = 4 * ir_numel(&g->nodes[gr[ord[hi]]].shape);
      if (hi > lo && bytes + b > bucket_bytes) break;
      in[hi - lo] = gr[ord[hi]], bytes += b, hi++;
    }
    int ar = node_op(g, IR_ALLREDUCE, in, hi - lo, &at, msg, msgn);
    if (ar < 0) return -1;
    int64_t off = 0;
    for (int j = lo; j < hi; j++) {
      ir_shape s = g->nodes[gr[ord[j]]].shape;
      int u = unpack(g, ar, off, &s, msg, msgn);
      if (u < 0) return -1;
      gr[ord[j]] = u, off += ir_numel(&s);
    }
    buckets++, lo = hi;
  }
  return buckets;
}

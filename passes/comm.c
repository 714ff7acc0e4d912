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
#include <string.h>

#include "passes/comm.h"
#include "passes/passes.h"

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

/* The step's loss rides in the first bucket (its value is final before any
 * gradient): rank 0 then reads the global batch's loss from the step's
 * output COMM_LOSS_OUT instead of running one more collective after the
 * step, a second point per step where the ranks would wait for each other. */
static int add_loss_output(ir_graph *g, int ar, int64_t off, char *msg, size_t msgn) {
  ir_shape one = {.rank = 1, .d = {1}};
  int u = unpack(g, ar, off, &one, msg, msgn);
  if (u < 0) return -1;
  ir_attr rs = {0}; /* rank 0: a scalar, as the loss */
  u = node_op(g, IR_RESHAPE, &u, 1, &rs, msg, msgn);
  if (u < 0) return -1;
  ir_add_output(g, COMM_LOSS_OUT, u);
  return 0;
}

/* Each bucket's start moves up to just after its last gradient (ir_add
 * appended it after the whole backward pass), so the sum travels while the
 * rest of the backward pass runs; the waits stay where they are, before the
 * update. gr[] and the graph's tables are renumbered. */
static int hoist(ir_graph *g, const int *start, int nb, int *gr, int nw, char *msg, size_t msgn) {
  int n = g->nnodes, k = 0, b = 0;
  int *order = ar_alloc(g->A, sizeof(int) * (size_t)(n + 1)), *newid = ar_alloc(g->A, sizeof(int) * (size_t)(n + 1));
  int *after = ar_alloc(g->A, sizeof(int) * (size_t)(nb + 1));
  char *moved = ar_alloc(g->A, (size_t)n + 1);
  memset(moved, 0, (size_t)n + 1);
  for (int j = 0; j < nb; j++) {
    const ir_node *x = &g->nodes[start[j]];
    after[j] = -1, moved[start[j]] = 1;
    for (int i = 0; i < x->nin; i++) after[j] = x->in[i] > after[j] ? x->in[i] : after[j];
  }
  /* buckets are formed in gradient order, so their anchors ascend */
  for (int i = 0; i < n; i++) {
    if (moved[i]) continue;
    order[k++] = i;
    while (b < nb && after[b] <= i) order[k++] = start[b++];
  }
  while (b < nb) order[k++] = start[b++];
  if (k != n) IR_UNREACHABLE("comm: hoisting lost nodes");
  if (rw_permute(g, order, newid, msg, msgn)) return -1;
  for (int w = 0; w < nw; w++) gr[w] = newid[gr[w]];
  return 0;
}

/* The bucket's largest gradient goes first (the others keep their order):
 * the slice at offset 0 of the bucket's sum is an alias of it
 * (plan/plan_buffers.c), the others are copies. On the digits MLP that
 * was fc2's weight, 256 kB copied after every sum: 6 us of a 0.7 ms
 * 2-rank step. Each value's sum is elementwise, so its place in the
 * bucket changes no bits; the bucket starts after its last gradient
 * whatever their order (hoist). */
static void largest_first(const ir_graph *g, const int *gr, int *ord, int n) {
  int big = 0;
  for (int j = 1; j < n; j++)
    if (ir_numel(&g->nodes[gr[ord[j]]].shape) > ir_numel(&g->nodes[gr[ord[big]]].shape)) big = j;
  int o = ord[big];
  memmove(ord + 1, ord, sizeof *ord * (size_t)big);
  ord[0] = o;
}

int comm_average_grads(ir_graph *g, int *gr, int nw, int64_t ranks, int64_t bucket_bytes, char *msg, size_t msgn) {
  if (ranks <= 1 || nw == 0) return 0;
  int loss = g->loss >= 0 && g->nodes[g->loss].dtype == IR_F32 && ir_numel(&g->nodes[g->loss].shape) == 1
               ? g->loss : -1;
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
  at.n = ranks, at.f = 1.0 / (double)ranks, at.k = 1; /* started here, awaited by a comm_wait */
  int buckets = 0, *start = ar_alloc(g->A, sizeof(int) * (size_t)(nw + 1));
  for (int lo = 0; lo < nw;) {
    int hi = lo;
    int64_t bytes = 0;
    int in[COMM_MAX_BUCKET], extra = buckets == 0 && loss >= 0; /* the loss's slot */
    while (hi < nw && hi - lo + extra < COMM_MAX_BUCKET) {
      int64_t b = 4 * ir_numel(&g->nodes[gr[ord[hi]]].shape);
      if (hi > lo && bytes + b > bucket_bytes) break;
      bytes += b, hi++;
    }
    largest_first(g, gr, ord + lo, hi - lo);
    for (int j = lo; j < hi; j++) in[j - lo] = gr[ord[j]];
    if (extra) in[hi - lo] = loss;
    int st = node_op(g, IR_ALLREDUCE, in, hi - lo + extra, &at, msg, msgn);
    int ar = st < 0 ? -1 : node_op(g, IR_COMM_WAIT, &st, 1, NULL, msg, msgn);
    if (ar < 0) return -1;
    start[buckets] = st;
    int64_t off = 0;
    for (int j = lo; j < hi; j++) {
      ir_shape s = g->nodes[gr[ord[j]]].shape;
      int u = unpack(g, ar, off, &s, msg, msgn);
      if (u < 0) return -1;
      gr[ord[j]] = u, off += ir_numel(&s);
    }
    if (extra && add_loss_output(g, ar, off, msg, msgn)) return -1;
    buckets++, lo = hi;
  }
  return hoist(g, start, buckets, gr, nw, msg, msgn) ? -1 : buckets;
}

/* ---- ZeRO-1 (ir_train.zero1): each rank updates 1/R of every parameter ----
 * A parameter of n values is seen flat and padded with zeros to m * R
 * (m = ceil(n / R)); rank r owns values [r m, (r + 1) m). */

int64_t comm_shard_len(int64_t n, int64_t ranks) { return (n + ranks - 1) / ranks; }

/* x flattened and padded to m * ranks */
static int padded(ir_graph *g, int x, int64_t ranks, char *msg, size_t msgn) {
  int64_t n = ir_numel(&g->nodes[x].shape), tot = comm_shard_len(n, ranks) * ranks;
  ir_attr rs = {0};
  rs.nlist = 1, rs.list[0] = n;
  int f = g->nodes[x].shape.rank == 1 ? x : node_op(g, IR_RESHAPE, &x, 1, &rs, msg, msgn);
  if (f < 0 || tot == n) return f;
  ir_attr pd = {0};
  pd.axis = 0, pd.start = 0, pd.end = n, pd.nlist = 1, pd.list[0] = tot;
  return node_op(g, IR_SLICE_GRAD, &f, 1, &pd, msg, msgn);
}

int comm_shard_grad(ir_graph *g, int gr, int64_t ranks, char *msg, size_t msgn) {
  int p = padded(g, gr, ranks, msg, msgn);
  if (p < 0) return -1;
  ir_attr at = {0};
  at.n = ranks, at.f = 1.0 / (double)ranks;
  return node_op(g, IR_REDUCE_SCATTER, &p, 1, &at, msg, msgn);
}

int comm_shard_of(ir_graph *g, int x, int64_t ranks, int64_t rank, char *msg, size_t msgn) {
  int p = padded(g, x, ranks, msg, msgn);
  if (p < 0) return -1;
  int64_t m = comm_shard_len(ir_numel(&g->nodes[x].shape), ranks);
  ir_attr sl = {0};
  sl.axis = 0, sl.start = rank * m, sl.end = (rank + 1) * m;
  return node_op(g, IR_SLICE, &p, 1, &sl, msg, msgn);
}

int comm_unshard(ir_graph *g, int xs, int64_t ranks, const ir_shape *s, char *msg, size_t msgn) {
  ir_attr at = {0};
  at.n = ranks;
  int all = node_op(g, IR_ALL_GATHER, &xs, 1, &at, msg, msgn);
  return all < 0 ? -1 : unpack(g, all, 0, s, msg, msgn);
}

int comm_sum_scalar(ir_graph *g, int x, int64_t ranks, char *msg, size_t msgn) {
  ir_attr at = {0};
  at.n = ranks, at.f = 1.0;
  int s = node_op(g, IR_ALLREDUCE, &x, 1, &at, msg, msgn);
  ir_attr rs = {0};
  return s < 0 ? -1 : node_op(g, IR_RESHAPE, &s, 1, &rs, msg, msgn);
}

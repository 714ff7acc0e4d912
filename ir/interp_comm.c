/* interp_comm.c -- reference kernels of the collectives: the same
 * communicator as the compiled kernels (rt/rt_comm.c), on doubles. With none
 * installed the job is one rank. A program compiled for another number of
 * ranks is an error here, not a hang. */
#include <string.h>

#include "interp_impl.h"
#include "rt/lathe_rt.h"

static int same_size(ik_ctx *c, const ir_node *n) {
  if (n->attr.n == lathe_rt_comm_size()) return 0;
  return ik_fail(c, n, "compiled for %lld ranks, running in a job of %d", (long long)n->attr.n, lathe_rt_comm_size());
}

int ik_allreduce(ik_ctx *c, const ir_node *n, double *out) {
  if (same_size(c, n)) return -1;
  int64_t off = 0;
  for (int k = 0; k < n->nin; k++) {
    int64_t m = ir_numel(&ik_arg(c, n, k)->shape);
    if (m > 0) memcpy(out + off, ik_in(c, n, k), sizeof(double) * (size_t)m);
    off += m;
  }
  if (lathe_rt_comm_sum(out, off, 1)) return ik_fail(c, n, "the collective failed");
  for (int64_t i = 0; i < off; i++) out[i] *= n->attr.f;
  return 0;
}

int ik_reduce_scatter(ik_ctx *c, const ir_node *n, double *out) {
  if (same_size(c, n)) return -1;
  int64_t m = ir_numel(&n->shape);
  if (lathe_rt_comm_scatter_sum(ik_in(c, n, 0), out, m, 1)) return ik_fail(c, n, "the collective failed");
  for (int64_t i = 0; i < m; i++) out[i] *= n->attr.f;
  return 0;
}

int ik_all_gather(ik_ctx *c, const ir_node *n, double *out) {
  if (same_size(c, n)) return -1;
  if (lathe_rt_comm_gather(ik_in(c, n, 0), out, ir_numel(&ik_arg(c, n, 0)->shape), 1))
    return ik_fail(c, n, "the collective failed");
  return 0;
}

/* The allreduce (k = 1) computed the sum already: the reference waits for nothing. */
int ik_comm_wait(ik_ctx *c, const ir_node *n, double *out) {
  int64_t m = ir_numel(&n->shape);
  if (m > 0) memcpy(out, ik_in(c, n, 0), sizeof(double) * (size_t)m);
  return 0;
}

/* interp_comm.c -- reference kernels of the collectives: the same
 * communicator as the compiled kernels (rt/rt_comm.c), on doubles. With none
 * installed the job is one rank. A program compiled for another number of
 * ranks is an error here, not a hang. */
#include <stdlib.h>
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

/* Point to point: the values travel as f32, as the compiled kernels send
 * them, so an interpreted stage and a compiled one agree. */
int ik_send(ik_ctx *c, const ir_node *n, double *out) {
  int64_t m = ir_numel(&n->shape);
  const double *x = ik_in(c, n, 0);
  float *f = malloc(sizeof(float) * (size_t)m + 1);
  if (!f) return ik_fail(c, n, "out of memory");
  for (int64_t i = 0; i < m; i++) f[i] = (float)x[i], out[i] = x[i];
  int rc = lathe_rt_comm_send(f, m * (int64_t)sizeof(float), (int)n->attr.n);
  free(f);
  return rc ? ik_fail(c, n, "no rank %lld to send to (a job of %d)", (long long)n->attr.n, lathe_rt_comm_size()) : 0;
}

int ik_recv(ik_ctx *c, const ir_node *n, double *out) {
  int64_t m = ir_numel(&n->shape);
  float *f = malloc(sizeof(float) * (size_t)m + 1);
  if (!f) return ik_fail(c, n, "out of memory");
  int rc = lathe_rt_comm_recv(f, m * (int64_t)sizeof(float), (int)n->attr.n);
  for (int64_t i = 0; rc == 0 && i < m; i++) out[i] = f[i];
  free(f);
  return rc ? ik_fail(c, n, "no rank %lld to receive from (a job of %d)", (long long)n->attr.n, lathe_rt_comm_size())
            : 0;
}

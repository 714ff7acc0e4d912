/* comm.h -- data-parallel gradient averaging (passes/comm.c). */
#ifndef LATHE_COMM_H
#define LATHE_COMM_H

#include "ir.h"

#define COMM_BUCKET_DEFAULT (1 << 20) /* bytes of gradients per allreduce */
#define COMM_MAX_BUCKET 16            /* tensors per allreduce (a kernel's operands are bounded) */
#define COMM_LOSS_OUT "__loss_mean"    /* output: the loss averaged over the ranks (the global batch's) */

/* gr[0..nw): gradient nodes. For ranks > 1, each becomes its average over
 * the ranks (allreduce buckets of about bucket_bytes, 0: the default), and
 * a scalar f32 loss averaged over the ranks is the output COMM_LOSS_OUT.
 * Returns the number of buckets (0 for one rank), or -1 with msg. */
int comm_average_grads(ir_graph *g, int *gr, int nw, int64_t ranks, int64_t bucket_bytes, char *msg, size_t msgn);

/* ZeRO-1 pieces (ir_train.zero1; docs/distributed.md). A parameter of n
 * values is flat and zero-padded to m * ranks, m = comm_shard_len(n),
 * and rank r owns its values [r m, (r + 1) m). Each returns a node id or
 * -1 with msg:
 *   comm_shard_grad  this rank's m values of the gradient gr averaged over
 *                    the ranks (reduce_scatter, scale 1 / ranks);
 *   comm_shard_of    this rank's m values of x;
 *   comm_unshard     every rank's m values gathered, cut to shape s;
 *   comm_sum_scalar  a one-value x summed over the ranks, as a scalar. */
int64_t comm_shard_len(int64_t n, int64_t ranks);
int comm_shard_grad(ir_graph *g, int gr, int64_t ranks, char *msg, size_t msgn);
int comm_shard_of(ir_graph *g, int x, int64_t ranks, int64_t rank, char *msg, size_t msgn);
int comm_unshard(ir_graph *g, int xs, int64_t ranks, const ir_shape *s, char *msg, size_t msgn);
int comm_sum_scalar(ir_graph *g, int x, int64_t ranks, char *msg, size_t msgn);

#endif

/* comm.h -- data-parallel gradient averaging (passes/comm.c). */
#ifndef LATHE_COMM_H
#define LATHE_COMM_H

#include "ir.h"

#define COMM_BUCKET_DEFAULT (1 << 20) /* bytes of gradients per allreduce */
#define COMM_MAX_BUCKET 16            /* tensors per allreduce (a kernel's operands are bounded) */

/* gr[0..nw): gradient nodes. For ranks > 1, each becomes its average over
 * the ranks (allreduce buckets of about bucket_bytes, 0: the default).
 * Returns the number of buckets (0 for one rank), or -1 with msg. */
int comm_average_grads(ir_graph *g, int *gr, int nw, int64_t ranks, int64_t bucket_bytes, char *msg, size_t msgn);

#endif

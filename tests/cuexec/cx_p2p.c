/* cx_p2p.c: the executor's answer to ncclSend and ncclRecv (a pipeline
 * stage's ops send and recv, codegen/cuda/cu_render_comm.c), through the
 * job's MPI path (rt/rt_comm.c) as the executor's collectives are.
 *
 * On a GPU, NCCL is a channel of its own: an activation a stage sends
 * with ncclSend can only be taken by the neighbour's ncclRecv, never by a
 * host-side MPI receive. Each transfer here therefore travels with a
 * header (a tag and its length), so that a pairing the GPU would not make
 * (an executor send met by the host's MPI receive, or the other way round)
 * fails loudly instead of passing on the executor and hanging on a GPU:
 * the sizes differ (MPI truncates) or the header is wrong (checked here). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx.h"
#include "rt/lathe_rt.h"

#define CX_P2P_TAG 0x4e43434c70327031ULL /* "NCCLp2p1" */

typedef struct {
  uint64_t tag, floats;
} cx_p2p_head;

static int p2p_fail(char *err, size_t n, const char *what, const cu_coll *c) {
  snprintf(err, n, "%s of %zu floats %s rank %d failed: %s", c->op == CU_COLL_SEND ? "ncclSend" : "ncclRecv", c->count,
           c->op == CU_COLL_SEND ? "to" : "from", c->peer, what);
  return 1;
}

int cx_p2p(const cx_mem *m, const cu_coll *c, char *err, size_t n) {
  int send = c->op == CU_COLL_SEND;
  size_t bytes = c->count * sizeof(float);
  if (cx_mem_check(m, send ? c->send : c->recv, bytes, send ? "ncclSend: the buffer" : "ncclRecv: the buffer", err, n))
    return 1;
  int size = lathe_rt_comm_size();
  if (c->peer < 0 || c->peer >= size || c->peer == lathe_rt_comm_rank())
    return p2p_fail(err, n, "no such other rank in the job", c);
  unsigned char *msg = malloc(sizeof(cx_p2p_head) + bytes);
  if (!msg) return p2p_fail(err, n, "out of host memory", c);
  cx_p2p_head h = {CX_P2P_TAG, c->count};
  int rc;
  if (send) {
    memcpy(msg, &h, sizeof h);
    memcpy(msg + sizeof h, (const void *)(uintptr_t)c->send, bytes);
    rc = lathe_rt_comm_send(msg, (int64_t)(sizeof h + bytes), c->peer) ? p2p_fail(err, n, "the MPI send failed", c) : 0;
  } else {
    memset(msg, 0, sizeof h);
    rc = lathe_rt_comm_recv(msg, (int64_t)(sizeof h + bytes), c->peer) ? p2p_fail(err, n, "the MPI receive failed", c)
                                                                        : 0;
    cx_p2p_head got;
    memcpy(&got, msg, sizeof got);
    if (!rc && (got.tag != CX_P2P_TAG || got.floats != c->count))
      rc = p2p_fail(err, n,
                    got.tag == CX_P2P_TAG
                        ? "the peer's ncclSend had another length"
                        : "the peer sent it from the host, not with ncclSend (a channel NCCL never pairs)",
                    c);
    if (!rc) memcpy((void *)(uintptr_t)c->recv, msg + sizeof h, bytes);
  }
  free(msg);
  return rc;
}

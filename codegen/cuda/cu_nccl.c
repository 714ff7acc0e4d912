/* cu_nccl.c -- the product's collectives for a data-parallel step on GPUs
 * (docs/distributed.md, "On GPUs"): NCCL, opened with dlopen (cu_dl.c),
 * one communicator per process on its own device. Rank 0 makes the unique
 * id, the job's MPI layer hands it to every rank (rt/rt_comm.c), and every
 * rank joins with ncclCommInitRank. The sums, and a pipeline stage's
 * transfers (ncclSend, ncclRecv), are enqueued on the program's stream, so
 * the CUDA graph of a step holds them with its kernels. The test
 * suite's CPU executor (tests/cuexec/) answers the same seam through the MPI
 * path instead; this file is the GPU's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cuda/cu.h"
#include "rt/lathe_rt.h"

enum { NCCL_FLOAT32 = 7, NCCL_SUM = 0 };

int cu_job_device(int count) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};
  if (count < 1 || lathe_rt_comm_size() < 2) return 0;
  int local = lathe_rt_comm_rank();
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) {
      local = atoi(v);
      break;
    }
  }
  return (local < 0 ? 0 : local) % count;
}

static void *the_comm;
static int comm_rank = -1, comm_ranks, comm_dev;

static const char *nccl_why(const cu_nccl_api *nc, int rc) {
  const char *s = nc->GetErrorString ? nc->GetErrorString(rc) : NULL;
  return s ? s : "unknown error";
}

/* Every rank learns whether every rank loaded NCCL before any of them
 * waits for the id: a rank without it must not leave the others hanging. */
static int all_loaded(const cu_nccl_api *nc, const char *why, int ranks, char *msg, size_t n) {
  double missing = nc == NULL;
  if (lathe_rt_comm_sum(&missing, 1, 1))
    return ir_fail(msg, n, "the ranks could not agree on NCCL (the MPI layer failed)");
  if (!nc) return ir_fail(msg, n, "the %d ranks communicate through NCCL: %s", ranks, why);
  if (missing > 0)
    return ir_fail(msg, n, "%.0f of the %d ranks could not load NCCL (their messages say why)", missing, ranks);
  return 0;
}

int cu_nccl_open(int rank, int ranks, int dev, void **comm, char *msg, size_t n) {
  if (the_comm && comm_rank == rank && comm_ranks == ranks && comm_dev == dev) return *comm = the_comm, 0;
  if (the_comm)
    return ir_fail(msg, n, "NCCL: this process joined as rank %d of %d on device %d, not rank %d of %d on device %d",
                   comm_rank, comm_ranks, comm_dev, rank, ranks, dev);
  char why[1024] = "";
  const cu_nccl_api *nc = cu_dl_nccl(why, sizeof why);
  if (all_loaded(nc, why, ranks, msg, n)) return -1;
  struct { int rc; cu_nccl_id id; } m; /* rank 0's id, or its failure */
  memset(&m, 0, sizeof m);
  if (rank == 0) m.rc = nc->GetUniqueId(&m.id);
  if (lathe_rt_comm_bcast(&m, (int64_t)sizeof m, 0))
    return ir_fail(msg, n, "NCCL: the unique id could not be sent to every rank (the MPI layer failed)");
  if (m.rc) return ir_fail(msg, n, "ncclGetUniqueId failed on rank 0: %s (NCCL error %d)", nccl_why(nc, m.rc), m.rc);
  void *c = NULL;
  int rc = nc->CommInitRank(&c, ranks, m.id, rank);
  if (rc)
    return ir_fail(msg, n, "ncclCommInitRank (rank %d of %d, device %d, %s) failed: %s (NCCL error %d)", rank, ranks,
                   dev, nc->path, nccl_why(nc, rc), rc);
  the_comm = c, comm_rank = rank, comm_ranks = ranks, comm_dev = dev;
  *comm = c;
  return 0;
}

/* One NCCL call on the stream. ncclSend and ncclRecv (NCCL 2.7 and later)
 * are optional in the table, so an older NCCL still sums a data-parallel
 * step. Without a group each transfer is a kernel on the stream that ends
 * once the peer's matching call has run: a stage's programs make them in
 * the order its neighbours expect (passes/stage.c, GPipe's schedule in
 * runtime/train_pipe.c), so they pair up without ncclGroupStart/End. */
static int nccl_call(const cu_nccl_api *nc, void *comm, const cu_coll *c, void *stream) {
  const void *s = (const void *)(uintptr_t)c->send;
  void *r = (void *)(uintptr_t)c->recv;
  switch (c->op) {
  case CU_COLL_ALLREDUCE: return nc->AllReduce(s, r, c->count, NCCL_FLOAT32, NCCL_SUM, comm, stream);
  case CU_COLL_REDUCE_SCATTER: return nc->ReduceScatter(s, r, c->count, NCCL_FLOAT32, NCCL_SUM, comm, stream);
  case CU_COLL_ALL_GATHER: return nc->AllGather(s, r, c->count, NCCL_FLOAT32, comm, stream);
  case CU_COLL_SEND: return nc->Send(s, c->count, NCCL_FLOAT32, c->peer, comm, stream);
  default: return nc->Recv(r, c->count, NCCL_FLOAT32, c->peer, comm, stream);
  }
}

int cu_nccl_coll(void *comm, const cu_coll *c, void *stream, char *msg, size_t n) {
  static const char *const names[CU_COLL_COUNT] = {"ncclAllReduce", "ncclReduceScatter", "ncclAllGather", "ncclSend",
                                                   "ncclRecv"};
  char why[1024];
  const cu_nccl_api *nc = cu_dl_nccl(why, sizeof why);
  if (!nc || !comm || c->op < 0 || c->op >= CU_COLL_COUNT) return ir_fail(msg, n, "NCCL: no communicator");
  if ((c->op == CU_COLL_SEND || c->op == CU_COLL_RECV) && (!nc->Send || !nc->Recv))
    return ir_fail(msg, n, "NCCL %d (%s) has no ncclSend/ncclRecv: pipeline stages on GPUs need NCCL 2.7 or later",
                   nc->version, nc->path);
  int rc = nccl_call(nc, comm, c, stream);
  int async = 0;
  if (!rc && nc->CommGetAsyncError(comm, &async) == 0 && async) rc = async;
  return rc ? ir_fail(msg, n, "%s of %zu floats failed: %s (NCCL error %d)", names[c->op], c->count, nccl_why(nc, rc),
                      rc)
            : 0;
}

/* test_cuda_p2p.c -- a pipeline stage's ops send and recv on the CUDA
 * backend without a GPU (codegen/cuda/cu_render_comm.c, cu_run.c): the
 * program is compiled for the GPU and run by the CPU executor
 * (tests/cuexec/), whose answer to ncclSend/ncclRecv goes through the
 * job's communicator (rt/rt_comm.c), here a fake peer, rank 1 of a job of
 * 2, that answers what it was sent plus 100.
 *
 * 1. send(a) gives a and sends it to rank 1; recv from rank 1 gives the
 *    peer's answer; the sum of the two orders the recv after the send, as
 *    a stage's gradient program does. Three runs: one by one, the run that
 *    captures the CUDA graph and a replay (the transfers inside it).
 * 2. A transfer meets a host-side MPI message instead of an ncclSend (the
 *    executor's header is missing): the run fails, naming the channel.
 * 3. Refused when the program is made: a peer that is this rank, and a
 *    job of one process (no peer at all).
 * 4. Where this machine has NCCL 2.7 or later, the product's table
 *    (codegen/cuda/cu_dl.c, where the two are optional) binds ncclSend and
 *    ncclRecv: a misspelt name would otherwise pass unnoticed until a GPU.
 * mpirun with 2 ranks, the char-GPT cut in 2 stages: tests/mpi/cuda_pipe.sh. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cuda/cu.h"
#include "codegen/cuda/cu_driver.h"
#include "codegen/cuda/cu_exec.h"
#include "cx.h"
#include "ir.h"
#include "rt/lathe_rt.h"
#include "test.h"

static const ir_loc L0 = {0};
enum { HEAD = 16, N = 6 }; /* the executor's header: tag and length, 8 bytes each */

static unsigned char box[HEAD + N * 4]; /* what rank 0 sent */
static int64_t box_bytes, host_style;   /* host_style: answer without the executor's header */
static int sends, recvs;

static int fk_send(void *ctx, const void *buf, int64_t bytes, int peer) {
  (void)ctx;
  if (peer != 1 || bytes > (int64_t)sizeof box) return -1;
  memcpy(box, buf, (size_t)bytes);
  box_bytes = bytes, sends++;
  return 0;
}

/* The peer answers what it got, every value plus 100 (header kept). */
static int fk_recv(void *ctx, void *buf, int64_t bytes, int peer) {
  (void)ctx;
  if (peer != 1 || bytes != box_bytes) return -1;
  recvs++;
  int64_t skip = host_style ? 0 : HEAD;
  memcpy(buf, box, (size_t)bytes);
  for (int e = 0; e < N; e++) {
    float v;
    memcpy(&v, box + HEAD + 4 * e, 4);
    v += 100;
    memcpy((unsigned char *)buf + skip + 4 * e, &v, 4);
  }
  return 0;
}

static int allreduce_unused(void *ctx, void *buf, int64_t n, int f64) {
  (void)ctx, (void)buf, (void)n, (void)f64;
  return -1;
}

/* send(a) to rank peer and recv from it: "sent" = a, "back" = recv + sent. */
static void build(ir_graph *g, arena *A, int peer) {
  char msg[256];
  ar_init(A);
  ir_graph_init(g, A, "p2p");
  ir_shape s = {.rank = 2, .d = {2, 3}};
  int a = ir_add_input(g, "a", IR_F32, &s, 0, L0);
  ir_attr at = {0};
  at.n = peer;
  int snd = ir_add(g, IR_SEND, &a, 1, &at, L0, msg, sizeof msg);
  at.nlist = 2, at.list[0] = 2, at.list[1] = 3;
  int rcv = ir_add(g, IR_RECV, NULL, 0, &at, L0, msg, sizeof msg);
  int sum = ir_add(g, IR_ADD, (int[]){rcv, snd}, 2, NULL, L0, msg, sizeof msg);
  CHECK(snd >= 0 && rcv >= 0 && sum >= 0);
  ir_add_output(g, "sent", snd);
  ir_add_output(g, "back", sum);
}

static void runs(void) {
  arena A;
  ir_graph g;
  build(&g, &A, 1);
  lathe_rt_comm c = {.rank = 0, .size = 2, .allreduce = allreduce_unused, .send = fk_send, .recv = fk_recv};
  lathe_rt_comm_install(&c);
  char msg[1024];
  cu_exec *x = cu_exec_create(&g, NULL, 0, msg, sizeof msg);
  CHECK_MSG(x != NULL, "%s", msg);
  float a[N], sent[N], back[N];
  void *ins[1] = {a}, *outs[2] = {sent, back};
  for (int run = 0; x && run < 3; run++) {
    for (int e = 0; e < N; e++) a[e] = 0.5f * (float)e - 1 + (float)run;
    sends = recvs = 0;
    int rc = cu_exec_run(x, ins, NULL, outs, NULL, msg, sizeof msg);
    CHECK_MSG(rc == 0, "run %d: %s", run, msg);
    CHECK_MSG(sends == 1 && recvs == 1, "run %d: %d sends, %d receives", run, sends, recvs);
    CHECK_MSG(box_bytes == HEAD + N * 4, "run %d: sent %lld bytes", run, (long long)box_bytes);
    double worst = 0;
    for (int e = 0; rc == 0 && e < N; e++) {
      float v;
      memcpy(&v, box + HEAD + 4 * e, 4);
      worst = fmax(worst, fabs(v - a[e]) + fabs(sent[e] - a[e]) + fabs(back[e] - (2 * a[e] + 100)));
    }
    CHECK_MSG(worst <= 1e-6, "run %d: off by %g", run, worst);
  }
  printf("send/recv on the executor: 3 runs (the 2nd captured, the 3rd replayed: %ld graph replays in all)\n",
         cx_graph_replays_total());
  /* 2. a host-side message where an ncclSend's was due */
  host_style = 1;
  CHECK(x && cu_exec_run(x, ins, NULL, outs, NULL, msg, sizeof msg) != 0);
  CHECK_MSG(strstr(msg, "ncclRecv of 6 floats from rank 1 failed") && strstr(msg, "not with ncclSend"), "%s", msg);
  host_style = 0;
  cu_exec_free(x);
  /* 3. refused when made */
  c.rank = 1;
  lathe_rt_comm_install(&c);
  CHECK(cu_exec_create(&g, NULL, 0, msg, sizeof msg) == NULL);
  CHECK_STR(msg, "--backend cuda: the program sends to rank 1, but this is rank 1 of a job of 2");
  lathe_rt_comm_install(NULL);
  CHECK(cu_exec_create(&g, NULL, 0, msg, sizeof msg) == NULL);
  CHECK_STR(msg, "--backend cuda: the program sends to rank 1, but this is rank 0 of a job of 1");
  ar_free(&A);
}

/* NCCL's version code: major * 1000 + minor * 100 + patch before 2.9,
 * major * 10000 + minor * 100 + patch from 2.9 on. */
static void nccl_table(void) {
  char why[1024] = "";
  const cu_nccl_api *nc = cu_dl_nccl(why, sizeof why);
  if (!nc) {
    printf("SKIPPED: the NCCL table (no NCCL here: %s)\n", why);
    return;
  }
  int p2p = nc->version >= 20900 || (nc->version >= 2700 && nc->version < 10000);
  CHECK_MSG(!p2p || (nc->Send && nc->Recv), "NCCL %d (%s): ncclSend/ncclRecv not bound", nc->version, nc->path);
  printf("NCCL %d (%s): ncclSend %s, ncclRecv %s\n", nc->version, nc->path, nc->Send ? "bound" : "absent",
         nc->Recv ? "bound" : "absent");
}

int main(void) {
  nccl_table();
  if (!cx_host_compiler()) {
    printf("SKIPPED: no host C++ compiler for the CPU executor: send/recv on the cuda backend was not tested\n");
    return TEST_REPORT();
  }
  cu_set_driver_factory(cx_driver);
  runs();
  cu_set_driver_factory(NULL);
  return TEST_REPORT();
}

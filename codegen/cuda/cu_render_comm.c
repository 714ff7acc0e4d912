/* cu_render_comm.c -- the collectives of a data-parallel step (allreduce,
 * comm_wait, reduce_scatter, all_gather; passes/comm.c, docs/distributed.md)
 * on the GPU: each is a CU_L_COLL launch, one call to the driver's coll
 * (ncclAllReduce and friends on the program's stream in the product,
 * codegen/cuda/cu_nccl.c), so a CUDA graph captures the sums with the
 * rest of the step. Around it, small kernels: an allreduce's inputs are
 * packed into its result (the bucket) first, and the scale (1/ranks) is a
 * multiplication after the sum, as the CPU kernels do (rt/rt_comm.c: sum,
 * then times scale), so the same sums give the same bits. On one stream
 * an allreduce started early (k = 1) is simply enqueued where it stands;
 * its comm_wait is the scale. A pipeline stage's send and recv
 * (passes/stage.c) are CU_L_COLL launches too (ncclSend, ncclRecv): the
 * activation or gradient moves device to device inside the step's graph,
 * where the CPU backends call lathe_rt_send/recv (MPI). */
#include <stdio.h>

#include "codegen/cuda/cu_render.h"

enum { CM_THREADS = 256 };

/* dst[e] = src[e] * f (f == 1: a copy) over count floats. dst may be src:
 * no __restrict__. */
static int scaled_copy(cu_rctx *r, cu_ref dst, cu_ref src, int64_t count, double f) {
  char fs[64];
  cu_begin(r, CM_THREADS);
  cu_sb_printf(&r->b, "float* a0, const float* a1");
  cu_loop_open(&r->b, count);
  if (f == 1) cu_sb_printf(&r->b, "    a0[e] = a1[e];\n  }\n}\n");
  else cu_sb_printf(&r->b, "    a0[e] = a1[e] * %s;\n  }\n}\n", cu_flt(f, fs, sizeof fs));
  cu_ref ops[2] = {dst, src};
  return cu_end(r, cu_blocks(count, CM_THREADS), CM_THREADS, ops, 2);
}

static int coll(cu_rctx *r, int op, cu_ref send, cu_ref recv, int64_t count) {
  cu_launch l = {.what = CU_L_COLL, .csend = send, .crecv = recv, .ranks = (int)cu_opn(r, 0)->attr.n};
  l.coll.op = op, l.coll.count = (size_t)count;
  return cu_add_launch(r, &l);
}

static int f32_only(cu_rctx *r) {
  for (int j = 0; j <= r->k->narg; j++)
    if (cu_opn(r, j)->dtype != IR_F32 || cu_is_bf16(r, cu_opn(r, j)))
      return cu_unsupported(r, "the collectives sum f32 tensors only");
  return 0;
}

/* The inputs packed into the result in order, summed in place; k = 0
 * also scales here, k = 1 leaves the scale to its comm_wait. */
static int r_allreduce(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  if (f32_only(r)) return -1;
  int64_t off = 0;
  for (int j = 1; j <= r->k->narg; j++) {
    int64_t m = ir_numel(&cu_opn(r, j)->shape);
    if (m > 0 && scaled_copy(r, cu_ref_at(cu_opnode(r, 0), off * 4), cu_ref_at(cu_opnode(r, j), 0), m, 1)) return -1;
    off += m;
  }
  if (off == 0) return 0;
  cu_ref out = cu_ref_at(cu_opnode(r, 0), 0);
  if (coll(r, CU_COLL_ALLREDUCE, out, out, off)) return -1;
  return n->attr.k == 1 || n->attr.f == 1 ? 0 : scaled_copy(r, out, out, off, n->attr.f);
}

static int r_comm_wait(cu_rctx *r) {
  const ir_node *x = cu_opn(r, 1); /* the started allreduce: its scale */
  int64_t m = ir_numel(&cu_opn(r, 0)->shape);
  return m == 0 ? 0 : scaled_copy(r, cu_ref_at(cu_opnode(r, 0), 0), cu_ref_at(cu_opnode(r, 1), 0), m, x->attr.f);
}

static int r_reduce_scatter(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  int64_t m = ir_numel(&n->shape);
  if (f32_only(r)) return -1;
  if (m == 0) return 0;
  cu_ref out = cu_ref_at(cu_opnode(r, 0), 0);
  if (coll(r, CU_COLL_REDUCE_SCATTER, cu_ref_at(cu_opnode(r, 1), 0), out, m)) return -1;
  return n->attr.f == 1 ? 0 : scaled_copy(r, out, out, m, n->attr.f);
}

static int r_all_gather(cu_rctx *r) {
  int64_t m = ir_numel(&cu_opn(r, 1)->shape);
  if (f32_only(r)) return -1;
  return m == 0 ? 0 : coll(r, CU_COLL_ALL_GATHER, cu_ref_at(cu_opnode(r, 1), 0), cu_ref_at(cu_opnode(r, 0), 0), m);
}

/* One transfer with rank attr.n; ranks 0: the job's size is checked when
 * the program joins the communicator (cu_run.c), not fixed by the graph. */
static int p2p(cu_rctx *r, int op, cu_ref send, cu_ref recv, int64_t count) {
  cu_launch l = {.what = CU_L_COLL, .csend = send, .crecv = recv, .ranks = 0};
  l.coll.op = op, l.coll.count = (size_t)count, l.coll.peer = (int)cu_opn(r, 0)->attr.n;
  return cu_add_launch(r, &l);
}

/* send(x): the result is x (a copy where the plan gave it its own
 * buffer), and x goes to rank attr.n as it stands in the stream. */
static int r_send(cu_rctx *r) {
  int64_t m = ir_numel(&cu_opn(r, 0)->shape);
  if (f32_only(r)) return -1;
  if (m == 0) return 0;
  cu_ref out = cu_ref_at(cu_opnode(r, 0), 0), x = cu_ref_at(cu_opnode(r, 1), 0);
  if (out.node != x.node && scaled_copy(r, out, x, m, 1)) return -1;
  return p2p(r, CU_COLL_SEND, x, x, m);
}

static int r_recv(cu_rctx *r) {
  int64_t m = ir_numel(&cu_opn(r, 0)->shape);
  if (f32_only(r)) return -1;
  if (m == 0) return 0;
  cu_ref out = cu_ref_at(cu_opnode(r, 0), 0);
  return p2p(r, CU_COLL_RECV, out, out, m);
}

static const cu_render_fn by_op[IR_NOPS] = {
  [IR_ALLREDUCE] = r_allreduce, [IR_COMM_WAIT] = r_comm_wait,
  [IR_REDUCE_SCATTER] = r_reduce_scatter, [IR_ALL_GATHER] = r_all_gather,
  [IR_SEND] = r_send, [IR_RECV] = r_recv,
};

cu_render_fn cu_comm_renderer(int op) { return op >= 0 && op < IR_NOPS ? by_op[op] : NULL; }

/* cg_quant.c -- qmatmul as a call to liblathe_rt's lathe_rt_qmatmul
 * (rt/rt_quant.c) with the node's geometry and its integer kernel (attr k),
 * which passes/quantize.c chose when the model was compiled: the best this
 * CPU has (lathe_rt_quant_isa; LATHE_CPU_FEATURES narrows it, so tests reach
 * every path). */
#include "cg_internal.h"

#include "rt/lathe_rt.h"

static void qgeom(const ir_graph *g, const ir_node *n, int64_t *M, int64_t *K) {
  const ir_shape *xs = &g->nodes[n->in[0]].shape;
  *K = xs->d[xs->rank - 1];
  *M = ir_numel(xs) / (*K ? *K : 1);
}

/* static int8 with an i8 input or output (rt/rt_qdq.h): lathe_rt_qmatmul_s8io */
static int s8io(const ir_graph *g, const ir_node *n) {
  return n->attr.i == LATHE_RT_Q_S8 && (n->attr.pad == 1 || g->nodes[n->in[0]].dtype == IR_I8);
}

static void emit_s8io(cg_k *k, int64_t M, int64_t K) {
  const ir_node *n = k->n;
  int o8 = n->attr.pad == 1, bias = n->nin - o8 > 4;
  V p[8] = {k->arg[0], k->arg[1], k->arg[2], k->arg[3], k->arg[4], bias ? k->arg[5] : NULL,
            o8 ? k->arg[n->nin] : NULL, k->scratch};
  int64_t oidx = o8 ? k->g->nodes[n->in[n->nin - 1]].shape.d[0] - 1 : 0;
  int64_t ints[7] = {M, K, n->attr.n, n->attr.k, n->attr.axis, k->g->nodes[n->in[0]].dtype == IR_I8, oidx};
  cg_call_rt(k, "lathe_rt_qmatmul_s8io", p, 8, ints, 7);
}

/* kernel arguments: out, x, w, s, c, bias (static int8's epilogue) */
void cg_emit_qmatmul(cg_k *k) {
  const ir_node *n = k->n;
  int64_t M, K;
  qgeom(k->g, n, &M, &K);
  if (s8io(k->g, n)) {
    emit_s8io(k, M, K);
    return;
  }
  int bf16 = n->attr.i == LATHE_RT_Q_BF16; /* x, w, [bias]: its bias is input 2 */
  V p[7] = {k->arg[0], k->arg[1], k->arg[2], n->nin > 2 && !bf16 ? k->arg[3] : NULL, n->nin > 3 ? k->arg[4] : NULL,
            bf16 ? (n->nin > 2 ? k->arg[3] : NULL) : n->nin > 4 ? k->arg[5] : NULL, k->scratch};
  int64_t ints[6] = {n->attr.i, M, K, n->attr.n, n->attr.k, n->attr.axis};
  cg_call_rt(k, "lathe_rt_qmatmul", p, 7, ints, 6);
}

int64_t cg_quant_scratch_bytes(const ir_graph *g, const ir_node *n) {
  int64_t M, K;
  qgeom(g, n, &M, &K);
  if (s8io(g, n)) return lathe_rt_qmatmul_s8io_scratch_bytes(M, K);
  return lathe_rt_qmatmul_kernel_scratch_bytes(n->attr.i, M, K, n->attr.n, n->attr.k);
}

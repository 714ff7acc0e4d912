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

/* kernel arguments: out, x, w, s, c, bias (static int8's epilogue) */
void cg_emit_qmatmul(cg_k *k) {
  const ir_node *n = k->n;
  int64_t M, K;
  qgeom(k->g, n, &M, &K);
  V p[7] = {k->arg[0], k->arg[1], k->arg[2], n->nin > 2 ? k->arg[3] : NULL, n->nin > 3 ? k->arg[4] : NULL,
            n->nin > 4 ? k->arg[5] : NULL, k->scratch};
  int64_t ints[6] = {n->attr.i, M, K, n->attr.n, n->attr.k, n->attr.axis};
  cg_call_rt(k, "lathe_rt_qmatmul", p, 7, ints, 6);
}

int64_t cg_quant_scratch_bytes(const ir_graph *g, const ir_node *n) {
  int64_t M, K;
  qgeom(g, n, &M, &K);
  return lathe_rt_qmatmul_scratch_bytes(n->attr.i, M, K, n->attr.n);
}

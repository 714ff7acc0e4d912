/* cg_qdq.c -- quantize and dequantize (static int8 between products,
 * rt/rt_qdq.h) as calls to liblathe_rt's lathe_rt_quantize and
 * lathe_rt_dequantize: out, x, s, the element count and the scale's index. */
#include "cg_internal.h"

void cg_emit_qdq(cg_k *k) {
  const ir_node *n = k->n;
  V p[3] = {k->arg[0], k->arg[1], k->arg[2]};
  int64_t ints[2] = {ir_numel(&n->shape), n->attr.n};
  cg_call_rt(k, n->op == IR_QUANTIZE ? "lathe_rt_quantize" : "lathe_rt_dequantize", p, 3, ints, 2);
}

/* interp_qdq.c -- quantize's and dequantize's reference (rt/rt_qdq.h):
 * the f32 operations of the kernels, so they agree bit for bit. */
#include "interp_impl.h"
#include "rt/rt_qdq.h"

int ik_quantize(ik_ctx *c, const ir_node *n, double *out) {
  const double *x = ik_in(c, n, 0), *s = ik_in(c, n, 1);
  float inv = rt_q_inv((float)s[n->attr.n]);
  for (int64_t i = 0, e = ir_numel(&n->shape); i < e; i++) out[i] = rt_q_requant((float)x[i], inv);
  return 0;
}

int ik_dequantize(ik_ctx *c, const ir_node *n, double *out) {
  const double *q = ik_in(c, n, 0), *s = ik_in(c, n, 1);
  float sx = (float)s[n->attr.n];
  for (int64_t i = 0, e = ir_numel(&n->shape); i < e; i++) out[i] = (float)q[i] * sx;
  return 0;
}

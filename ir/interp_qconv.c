/* interp_qconv.c -- qconv2d's reference: the im2col rows the kernel builds
 * (rt/rt_qconv.h), each quantized and multiplied as qmatmul's reference
 * does (exact int64 sums of the integer products, the same float epilogue;
 * static int8's f32 form: sum x * q in double times s[o]), the result
 * transposed to [N, O, OH, OW]. Every kernel path must equal it bit for
 * bit. (The rows' arithmetic repeats interp_quant.c's dq8 on purpose: that
 * one reads its rows from the node's input.) */
#include <stdint.h>
#include <stdlib.h>

#include "conv.h"
#include "interp_impl.h"
#include "rt/lathe_rt.h"
#include "rt/rt_qconv.h"
#include "rt/rt_qdq.h"
#include "rt/rt_quant.h"

/* one im2col row r [K] times every output channel into y [O] */
static int qc_row(ik_ctx *c, const ir_node *n, const float *r, int64_t K, int64_t O, uint8_t *q, double *y) {
  const double *w = ik_in(c, n, 1), *s = ik_in(c, n, 2), *cc = ik_in(c, n, 3);
  int o8 = n->attr.start == 1, xi8 = ik_arg(c, n, 0)->dtype == IR_I8; /* between products: rt/rt_qdq.h */
  const double *b = n->nin - o8 > 4 ? ik_in(c, n, 4) : NULL;
  float oinv = o8 ? rt_q_inv((float)ik_in(c, n, n->nin - 1)[ik_arg(c, n, n->nin - 1)->shape.d[0] - 1]) : 0.0f;
  int64_t Kp = rt_q_kpad(K);
  if (n->attr.i == LATHE_RT_Q_S8 && n->attr.k == LATHE_RT_ISA_F32) {
    for (int64_t o = 0; o < O; o++) {
      double acc = 0;
      for (int64_t k = 0; k < K; k++) acc += (double)r[k] * w[rt_q_dq8_at(o, k, Kp)];
      double v = acc * s[o] + (b ? b[o] : 0.0);
      y[o] = n->attr.axis == 1 && !(v > 0) ? 0.0 : v;
    }
    return 0;
  }
  for (int64_t k = 0; xi8 && k < Kp; k++) q[k] = (uint8_t)(k < K ? (int)r[k] : 0); /* s8 already */
  float sx = xi8 ? (float)s[O]
             : n->attr.i == LATHE_RT_Q_S8 ? rt_q_row_static(r, K, Kp, 0, (float)s[O], q) : rt_q_row(r, K, Kp, 0, q);
  for (int64_t o = 0; o < O; o++) {
    int64_t acc = 0, sum = 0;
    for (int64_t k = 0; k < Kp; k++) {
      int64_t wk = (int64_t)w[rt_q_dq8_at(o, k, Kp)];
      acc += (int64_t)(int8_t)q[k] * wk;
      sum += wk;
    }
    if (acc != (int32_t)acc || 128 * sum != (int64_t)cc[o])
      return ik_fail(c, n, "int8 weights of output channel %lld: offsets %lld, expected 128 * %lld", (long long)o,
                     (long long)cc[o], (long long)sum);
    y[o] = rt_q_epilogue(rt_q_out((int32_t)acc, sx, (float)s[o]), b ? (float)b[o] : 0.0f, b != NULL, n->attr.axis);
    if (o8) y[o] = rt_q_requant((float)y[o], oinv);
  }
  return 0;
}

int ik_qconv2d(ik_ctx *c, const ir_node *n, double *out) {
  ir_conv d;
  if (ir_qconv_geom(c->g, n, &d, c->msg, c->msgn)) return -1;
  rt_qc_geom g = {d.N, d.C, d.H, d.W, d.O, d.KH, d.KW, d.OH, d.OW, d.s, d.dil, d.padT, d.padL};
  int64_t K = d.C * d.KH * d.KW, P = d.OH * d.OW, nx = d.N * d.C * d.H * d.W;
  const double *xd = ik_in(c, n, 0);
  float *x = malloc(sizeof(float) * (size_t)nx + 1), *r = malloc(sizeof(float) * (size_t)K + 1);
  uint8_t *q = malloc((size_t)rt_q_kpad(K) + 1);
  double *y = malloc(sizeof(double) * (size_t)d.O + 1);
  int rc = x && r && q && y ? 0 : ik_fail(c, n, "out of memory");
  for (int64_t i = 0; !rc && i < nx; i++) x[i] = (float)xd[i];
  for (int64_t m = 0; !rc && m < d.N * P; m++) {
    rt_qc_row(x, &g, m, r);
    rc = qc_row(c, n, r, K, d.O, q, y);
    for (int64_t o = 0; !rc && o < d.O; o++) out[((m / P) * d.O + o) * P + m % P] = y[o];
  }
  free(x), free(r), free(q), free(y);
  return rc;
}

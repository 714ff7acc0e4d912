/* shape_quant.c -- the shape rule of qmatmul: x[..., K] f32 times stored
 * weights whose dtype and shape the mode fixes (rt/rt_quant.h); the result
 * is [..., N] f32 (static int8 between products, rt/rt_qdq.h: x and the
 * result may be i8). A message names the operand, what it must be and what
 * it is. */
#include <stdio.h>

#include "ir.h"
#include "rt/lathe_rt.h"
#include "rt/rt_quant.h"

static const char *tstr(const ir_node *x, char *b, size_t nb) {
  char s[160];
  snprintf(b, nb, "%s%s", ir_dtype_name(x->dtype), ir_shape_str(&x->shape, s, sizeof s));
  return b;
}

/* operand k of n must be t[d0, d1] (d1 < 0: rank 1) */
static int need(const ir_graph *g, const ir_node *n, int k, const char *what, ir_dtype t, int64_t d0, int64_t d1,
                char *msg, size_t mn) {
  const ir_node *p = &g->nodes[n->in[k]];
  ir_shape want = {.rank = d1 < 0 ? 1 : 2, .d = {d0, d1}};
  if (p->dtype == t && ir_shape_eq(&p->shape, &want)) return 0;
  char b1[160], b2[200];
  return ir_fail(msg, mn, "qmatmul: %s must be %s%s, got %s", what, ir_dtype_name(t),
                 ir_shape_str(&want, b1, sizeof b1), tstr(p, b2, sizeof b2));
}

int shp_qmatmul(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  static const int nin[] = {[LATHE_RT_Q_W8] = 3, [LATHE_RT_Q_W4] = 3, [LATHE_RT_Q_DQ8] = 4, [LATHE_RT_Q_BF16] = 2,
                            [LATHE_RT_Q_F16] = 2, [LATHE_RT_Q_S8] = 4};
  int64_t mode = n->attr.i, N = n->attr.n;
  if (mode < LATHE_RT_Q_W8 || mode > LATHE_RT_Q_S8)
    return ir_fail(msg, mn, "qmatmul: unknown mode %lld (expected 1 to 6)", (long long)mode);
  int64_t kmax = mode == LATHE_RT_Q_S8 ? LATHE_RT_ISA_F32 : LATHE_RT_ISA_AVX512VNNI; /* f32: static int8 only */
  /* bf16 dot products (rt/rt_qbf16.c, rt/rt_amx.c), int8 on AMX tiles */
  int bf16 = mode == LATHE_RT_Q_BF16 && lathe_rt_isa_bf16dot(n->attr.k);
  int amx = (mode == LATHE_RT_Q_DQ8 || mode == LATHE_RT_Q_S8) && n->attr.k == LATHE_RT_ISA_AMXINT8;
  if ((n->attr.k < LATHE_RT_ISA_SCALAR || n->attr.k > kmax) && !bf16 && !amx)
    return ir_fail(msg, mn, "qmatmul: unknown integer kernel k=%lld (expected 0 to %lld%s)", (long long)n->attr.k,
                   (long long)kmax, mode == LATHE_RT_Q_BF16 ? ", or 8: avx512-bf16, 10: amx-bf16"
                                    : mode == LATHE_RT_Q_DQ8 || mode == LATHE_RT_Q_S8 ? ", or 9: amx-int8" : "");
  /* static int8 between products (rt/rt_qdq.h): pad = 1, the output s8
   * requantized with the scale at the end of the last input */
  int o8 = mode == LATHE_RT_Q_S8 && n->attr.pad == 1, nbase = n->nin - o8;
  if (n->attr.pad != 0 && !o8)
    return ir_fail(msg, mn, "qmatmul: pad (an int8 output) is static int8's only, 0 or 1; got %lld",
                   (long long)n->attr.pad);
  int i8 = mode == LATHE_RT_Q_DQ8 || mode == LATHE_RT_Q_S8, ep = i8 || bf16; /* the kernels with an epilogue */
  int epi = ep && nbase == nin[mode] + 1; /* their bias */
  if (nbase != nin[mode] && !epi)
    return ir_fail(msg, mn, "qmatmul: mode %lld takes %d inputs%s, got %d", (long long)mode, nin[mode],
                   ep ? " (and a bias)" : "", n->nin);
  if (n->attr.axis != 0 && (!ep || n->attr.axis != 1))
    return ir_fail(msg, mn, "qmatmul: the epilogue's activation (axis) is 1 (relu), in the int8 modes and bf16 on its "
                   "dot products only; got %lld", (long long)n->attr.axis);
  const ir_node *x = &g->nodes[n->in[0]];
  char b[200];
  int xi8 = mode == LATHE_RT_Q_S8 && x->dtype == IR_I8; /* quantized by a quantize node or the product before */
  if ((x->dtype != IR_F32 && !xi8) || x->shape.rank < 1)
    return ir_fail(msg, mn, "qmatmul: x must be f32%s of rank >= 1, got %s", mode == LATHE_RT_Q_S8 ? " or i8" : "",
                   tstr(x, b, sizeof b));
  if ((xi8 || o8) && !lathe_rt_isa_int8(n->attr.k))
    return ir_fail(msg, mn, "qmatmul: an i8 input or output needs an integer kernel (k=1 to 3 or 9), got k=%lld",
                   (long long)n->attr.k);
  int64_t K = x->shape.d[x->shape.rank - 1];
  if (N < 1) return ir_fail(msg, mn, "qmatmul: n (the output width) must be >= 1, got %lld", (long long)N);
  int grouped = mode == LATHE_RT_Q_W8 || mode == LATHE_RT_Q_W4;
  if (grouped && K % RT_Q_GROUP)
    return ir_fail(msg, mn, "qmatmul: w8 and w4 need K a multiple of %d, got %lld", RT_Q_GROUP, (long long)K);
  if (i8 && K > RT_Q_MAXK)
    return ir_fail(msg, mn, "qmatmul: int8 needs K <= %d, got %lld", RT_Q_MAXK, (long long)K);
  int rc = 0;
  switch (mode) {
  case LATHE_RT_Q_W8: rc = need(g, n, 1, "w", IR_I8, rt_q_npad(N), K, msg, mn); break;
  case LATHE_RT_Q_W4: rc = need(g, n, 1, "w", IR_U8, rt_q_npad(N), K / 2, msg, mn); break;
  case LATHE_RT_Q_DQ8: case LATHE_RT_Q_S8: rc = need(g, n, 1, "w", IR_I8, rt_q_npad(N), rt_q_kpad(K), msg, mn); break;
  case LATHE_RT_Q_BF16: rc = need(g, n, 1, "w", IR_BF16, N, K, msg, mn); break;
  default: rc = need(g, n, 1, "w", IR_F16, N, K, msg, mn); break;
  }
  if (rc) return rc;
  if (grouped && need(g, n, 2, "s", IR_F32, rt_q_npad(N), K / RT_Q_GROUP, msg, mn)) return -1;
  /* static int8's s carries the input's scale after the columns' */
  if (i8 && (need(g, n, 2, "s", IR_F32, N + (mode == LATHE_RT_Q_S8), -1, msg, mn) ||
             need(g, n, 3, "c", IR_I32, N, -1, msg, mn)))
    return -1;
  if (epi && need(g, n, nin[mode], "bias", IR_F32, N, -1, msg, mn)) return -1;
  const ir_node *os = o8 ? &g->nodes[n->in[n->nin - 1]] : NULL;
  if (os && (os->dtype != IR_F32 || os->shape.rank != 1 || os->shape.d[0] < 1))
    return ir_fail(msg, mn, "qmatmul: the output's scale (its last input) must be f32 of rank 1, got %s",
                   tstr(os, b, sizeof b));
  n->dtype = o8 ? IR_I8 : IR_F32;
  n->shape = x->shape;
  n->shape.d[n->shape.rank - 1] = N;
  return 0;
}

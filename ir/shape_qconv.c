/* shape_qconv.c -- the shape rule of qconv2d (int8 conv2d, rt/rt_qconv.h):
 * x f32 [N, C, H, W] (or [N, C, L]) and the f32 weight's shape in list
 * give conv2d's geometry (ir/conv.h, groups 1); the stored weights are the
 * [O, C*KH*KW] matrix as int8-dynamic or static int8 store a dense
 * weight; the result is conv2d's, f32. */
#include <stdio.h>

#include "conv.h"
#include "ir.h"
#include "rt/lathe_rt.h"
#include "rt/rt_quant.h"

/* operand k of n must be t[d0] or t[d0, d1] (d1 < 0: rank 1) */
static int need(const ir_graph *g, const ir_node *n, int k, const char *what, ir_dtype t, int64_t d0, int64_t d1,
                char *msg, size_t mn) {
  const ir_node *p = &g->nodes[n->in[k]];
  ir_shape want = {.rank = d1 < 0 ? 1 : 2, .d = {d0, d1}};
  if (p->dtype == t && ir_shape_eq(&p->shape, &want)) return 0;
  char b1[160], b2[160];
  return ir_fail(msg, mn, "qconv2d: %s must be %s%s, got %s%s", what, ir_dtype_name(t),
                 ir_shape_str(&want, b1, sizeof b1), ir_dtype_name(p->dtype), ir_shape_str(&p->shape, b2, sizeof b2));
}

/* the geometry of n (its list is the f32 weight's shape) */
int ir_qconv_geom(const ir_graph *g, const ir_node *n, ir_conv *c, char *msg, size_t mn) {
  ir_shape w = {.rank = n->attr.nlist};
  for (int i = 0; i < n->attr.nlist && i < IR_MAXDIM; i++) w.d[i] = n->attr.list[i];
  ir_attr a = n->attr;
  a.k = 1; /* groups: none (a grouped conv stays f32) */
  if (ir_conv_geom(&g->nodes[n->in[0]].shape, &w, &a, c, msg, mn)) return -1;
  /* the kernel's packed geometry (rt_qc_unpack) */
  if (c->KH > 0xffff || c->KW > 0xffff || c->s > 0xffff || c->dil > 0xffff || c->H > 0xffffffffLL ||
      c->W > 0xffffffffLL || c->padT > 0xffffffffLL || c->padL > 0xffffffffLL)
    return ir_fail(msg, mn, "qconv2d: kernel, stride or dilation above 65535, or an input side above 2^32");
  return 0;
}

int shp_qconv2d(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  int64_t mode = n->attr.i;
  if (mode != LATHE_RT_Q_DQ8 && mode != LATHE_RT_Q_S8)
    return ir_fail(msg, mn, "qconv2d: mode must be 3 (int8-dynamic) or 6 (static int8), got %lld", (long long)mode);
  int64_t kmax = mode == LATHE_RT_Q_S8 ? LATHE_RT_ISA_F32 : LATHE_RT_ISA_AVX512VNNI;
  if (n->attr.k < LATHE_RT_ISA_SCALAR || n->attr.k > kmax)
    return ir_fail(msg, mn, "qconv2d: unknown integer kernel k=%lld (expected 0 to %lld)", (long long)n->attr.k,
                   (long long)kmax);
  /* static int8 between products (rt/rt_qdq.h): start = 1, the output s8
   * requantized with the scale at the end of the last input */
  int o8 = n->attr.start == 1, nbase = n->nin - o8, ik = n->attr.k >= LATHE_RT_ISA_AVX2 && n->attr.k <= LATHE_RT_ISA_AVX512VNNI;
  if ((n->attr.start != 0 && !o8) || (o8 && mode != LATHE_RT_Q_S8))
    return ir_fail(msg, mn, "qconv2d: start (an int8 output) is static int8's only, 0 or 1; got %lld",
                   (long long)n->attr.start);
  if (nbase != 4 && nbase != 5)
    return ir_fail(msg, mn, "qconv2d: takes x, w, s, c and an optional bias, got %d inputs", n->nin);
  if (n->attr.axis != 0 && n->attr.axis != 1)
    return ir_fail(msg, mn, "qconv2d: the epilogue's activation (axis) is 0 or 1 (relu), got %lld",
                   (long long)n->attr.axis);
  int xi8 = g->nodes[n->in[0]].dtype == IR_I8 && mode == LATHE_RT_Q_S8;
  if (g->nodes[n->in[0]].dtype != IR_F32 && !xi8) return ir_fail(msg, mn, "qconv2d: x must be f32");
  if ((xi8 || o8) && !ik)
    return ir_fail(msg, mn, "qconv2d: an i8 input or output needs an integer kernel (k=1 to 3), got k=%lld",
                   (long long)n->attr.k);
  const ir_node *os = o8 ? &g->nodes[n->in[n->nin - 1]] : NULL;
  if (os && (os->dtype != IR_F32 || os->shape.rank != 1 || os->shape.d[0] < 1))
    return ir_fail(msg, mn, "qconv2d: the output's scale (its last input) must be f32 of rank 1");
  ir_conv c;
  if (ir_qconv_geom(g, n, &c, msg, mn)) return -1;
  int64_t K = c.C * c.KH * c.KW, O = c.O;
  if (K > RT_Q_MAXK) return ir_fail(msg, mn, "qconv2d: int8 needs C*KH*KW <= %d, got %lld", RT_Q_MAXK, (long long)K);
  if (need(g, n, 1, "w", IR_I8, rt_q_npad(O), rt_q_kpad(K), msg, mn) ||
      need(g, n, 2, "s", IR_F32, O + (mode == LATHE_RT_Q_S8), -1, msg, mn) ||
      need(g, n, 3, "c", IR_I32, O, -1, msg, mn) || (nbase == 5 && need(g, n, 4, "bias", IR_F32, O, -1, msg, mn)))
    return -1;
  n->dtype = o8 ? IR_I8 : IR_F32;
  n->shape = ir_conv_out(&c);
  return 0;
}

/* cg_qconv.c -- qconv2d as a call to liblathe_rt's lathe_rt_qconv2d
 * (rt/rt_qconv.c) with the node's geometry packed into the few integer
 * arguments a generated call has (rt_qc_unpack) and the integer kernel
 * passes/quantize.c chose (attr k). */
#include "cg_internal.h"

#include "ir/conv.h"
#include "rt/lathe_rt.h"

/* N, C, H | W << 32, O, OH | OW << 32, KH | KW << 16 | s << 32 | dil << 48,
 * padT | padL << 32 (the shape rule checked that each fits its bits) */
static void packed(const ir_graph *g, const ir_node *n, int64_t v[7]) {
  ir_conv c = {0};
  char msg[256];
  (void)ir_qconv_geom(g, n, &c, msg, sizeof msg); /* the shape rule passed */
  v[0] = c.N, v[1] = c.C, v[2] = c.H | c.W << 32, v[3] = c.O, v[4] = c.OH | c.OW << 32;
  v[5] = c.KH | c.KW << 16 | c.s << 32 | c.dil << 48, v[6] = c.padT | c.padL << 32;
}

/* static int8 between products (rt/rt_qdq.h): an i8 input or output */
static int s8io(const ir_graph *g, const ir_node *n) {
  return n->attr.start == 1 || g->nodes[n->in[0]].dtype == IR_I8;
}

static void emit_s8io(cg_k *k) {
  const ir_node *n = k->n;
  int o8 = n->attr.start == 1;
  V p[8] = {k->arg[0], k->arg[1], k->arg[2], k->arg[3], k->arg[4], n->nin - o8 > 4 ? k->arg[5] : NULL,
            o8 ? k->arg[n->nin] : NULL, k->scratch};
  int64_t ints[8];
  packed(k->g, n, ints);
  int64_t oidx = o8 ? k->g->nodes[n->in[n->nin - 1]].shape.d[0] - 1 : 0;
  ints[7] = n->attr.k | n->attr.axis << 8 | (int64_t)(k->g->nodes[n->in[0]].dtype == IR_I8) << 16 | oidx << 24;
  cg_call_rt(k, "lathe_rt_qconv2d_s8io", p, 8, ints, 8);
}

/* kernel arguments: out, x, w, s, c, bias */
void cg_emit_qconv2d(cg_k *k) {
  const ir_node *n = k->n;
  if (s8io(k->g, n)) {
    emit_s8io(k);
    return;
  }
  V p[7] = {k->arg[0], k->arg[1], k->arg[2], k->arg[3], k->arg[4], n->nin > 4 ? k->arg[5] : NULL, k->scratch};
  int64_t ints[8];
  packed(k->g, n, ints);
  ints[7] = n->attr.i | n->attr.k << 8 | n->attr.axis << 16;
  cg_call_rt(k, "lathe_rt_qconv2d", p, 7, ints, 8);
}

int64_t cg_qconv_scratch_bytes(const ir_graph *g, const ir_node *n) {
  int64_t v[7];
  packed(g, n, v);
  return lathe_rt_qconv2d_scratch_bytes(n->attr.i, v[0], v[1], v[2], v[3], v[4], v[5]);
}

/* shape_qdq.c -- the shape rules of quantize and dequantize (static int8
 * between products, rt/rt_qdq.h): the result has the input's shape, i8
 * for quantize and f32 for dequantize; the scale is s[n] of an f32 vector. */
#include <stdio.h>

#include "ir.h"

static int qdq(ir_graph *g, ir_node *n, const char *op, ir_dtype in, ir_dtype out, char *msg, size_t mn) {
  const ir_node *x = &g->nodes[n->in[0]], *s = &g->nodes[n->in[1]];
  char b[160];
  if (x->dtype != in)
    return ir_fail(msg, mn, "%s: x must be %s, got %s%s", op, ir_dtype_name(in), ir_dtype_name(x->dtype),
                   ir_shape_str(&x->shape, b, sizeof b));
  if (s->dtype != IR_F32 || s->shape.rank != 1)
    return ir_fail(msg, mn, "%s: the scales must be an f32 vector, got %s%s", op, ir_dtype_name(s->dtype),
                   ir_shape_str(&s->shape, b, sizeof b));
  if (n->attr.n < 0 || n->attr.n >= s->shape.d[0])
    return ir_fail(msg, mn, "%s: the scale's index n=%lld is outside its %lld scales", op, (long long)n->attr.n,
                   (long long)s->shape.d[0]);
  n->dtype = out;
  n->shape = x->shape;
  return 0;
}

int shp_quantize(ir_graph *g, ir_node *n, char *msg, size_t mn) { return qdq(g, n, "quantize", IR_F32, IR_I8, msg, mn); }
int shp_dequantize(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  return qdq(g, n, "dequantize", IR_I8, IR_F32, msg, mn);
}

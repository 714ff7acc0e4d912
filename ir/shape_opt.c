/* shape_opt.c -- shape rules of the training-step ops (the last rows of
 * ops.def, made by passes/optimizer.c). Same contract as shape.c: check the
 * inputs, set n->dtype and n->shape, or write "op: what is wrong" and return
 * -1. minimum and sign reuse shape.c's elementwise rules. */
#include <stdio.h>
#include <string.h>

#include "ir.h"

/* randn and dropout_mask: f32 of shape attr.list, driven by an integer
 * scalar (the step counter); dropout's p must be in [0, 1). */
int shp_rng(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *s = &g->nodes[n->in[0]];
  const char *name = ir_ops[n->op].name;
  if (s->shape.rank != 0 || !ir_dtype_is_int(s->dtype) || s->dtype == IR_BOOL) {
    if (msg && mn) snprintf(msg, mn, "%s: the step counter must be an integer scalar", name);
    return -1;
  }
  if (n->attr.nlist < 0 || n->attr.nlist > IR_MAXDIM) {
    if (msg && mn) snprintf(msg, mn, "%s: rank must be 0..%d, got %d", name, IR_MAXDIM, n->attr.nlist);
    return -1;
  }
  ir_shape sh;
  memset(&sh, 0, sizeof sh);
  sh.rank = n->attr.nlist;
  memcpy(sh.d, n->attr.list, sizeof(int64_t) * (size_t)sh.rank);
  int64_t count = ir_numel(&sh);
  if (count < 1 || count > IR_MAX_ELEMS) {
    if (msg && mn) snprintf(msg, mn, "%s: invalid shape", name);
    return -1;
  }
  if (n->op == IR_DROPOUT_MASK && !(n->attr.f >= 0 && n->attr.f < 1)) {
    if (msg && mn) snprintf(msg, mn, "dropout_mask: p must be in [0, 1), got %g", n->attr.f);
    return -1;
  }
  n->dtype = IR_F32;
  n->shape = sh;
  return 0;
}

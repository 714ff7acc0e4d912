/* shape_grad.c -- shape rules of the backward-pass ops (the IR_CAT_GRAD rows
 * of ops.def). Same contract as shape.c: check the inputs, set n->dtype and
 * n->shape, or write "op: what is wrong" and return -1. These nodes are made
 * by passes/autodiff.c, so a failure here is a bug there, but the rules still
 * check everything so that the verifier can catch it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "conv.h"
#include "ir.h"

#define SBUF 200

static const char *opname(const ir_node *n) { return ir_ops[n->op].name; }
static const ir_node *in_(const ir_graph *g, const ir_node *n, int k) { return &g->nodes[n->in[k]]; }
static const char *sh(const ir_shape *s, char *buf) { return ir_shape_str(s, buf, SBUF); }

static void set(ir_node *n, ir_dtype t, const ir_shape *s) {
  n->dtype = t;
  n->shape = *s;
}

/* attr.list as a shape (rank checked) */
static int list_shape(const ir_node *n, ir_shape *s, char *msg, size_t mn) {
  if (n->attr.nlist < 0 || n->attr.nlist > IR_MAXDIM)
    return ir_fail(msg, mn, "%s: target rank must be 0..%d, got %d", opname(n), IR_MAXDIM, n->attr.nlist);
  memset(s, 0, sizeof *s);
  s->rank = n->attr.nlist;
  memcpy(s->d, n->attr.list, sizeof(int64_t) * (size_t)s->rank);
  char b[SBUF];
  if (ir_numel(s) < 1) return ir_fail(msg, mn, "%s: invalid target shape %s", opname(n), sh(s, b));
  return 0;
}

static int need_float(const ir_node *n, const ir_node *x, const char *what, char *msg, size_t mn) {
  if (ir_dtype_is_float(x->dtype)) return 0;
  return ir_fail(msg, mn, "%s: %s must be floating-point, got %s", opname(n), what, ir_dtype_name(x->dtype));
}

/* a must have exactly shape s and dtype t */
static int need(const ir_node *n, const ir_node *a, const char *what, const ir_shape *s, ir_dtype t,
                char *msg, size_t mn) {
  char b1[SBUF], b2[SBUF];
  if (!ir_shape_eq(&a->shape, s))
    return ir_fail(msg, mn, "%s: %s must be %s, got %s", opname(n), what, sh(s, b1), sh(&a->shape, b2));
  if (a->dtype != t)
    return ir_fail(msg, mn, "%s: %s must be %s, got %s", opname(n), what, ir_dtype_name(t),
                ir_dtype_name(a->dtype));
  return 0;
}

static int need_scalar(const ir_node *n, const ir_node *a, char *msg, size_t mn) {
  char b[SBUF];
  if (a->shape.rank == 0 && ir_dtype_is_float(a->dtype)) return 0;
  return ir_fail(msg, mn, "%s: the loss gradient must be a float scalar, got %s%s", opname(n),
              ir_dtype_name(a->dtype), sh(&a->shape, b));
}

/* ---- broadcasting ---- */

int shp_sum_to(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0);
  ir_shape t, b;
  char b1[SBUF], b2[SBUF];
  if (list_shape(n, &t, msg, mn) || need_float(n, x, "input", msg, mn)) return -1;
  if (ir_broadcast(&t, &x->shape, &b) || !ir_shape_eq(&b, &x->shape))
    return ir_fail(msg, mn, "sum_to: %s does not broadcast to the input %s", sh(&t, b1), sh(&x->shape, b2));
  set(n, x->dtype, &t);
  return 0;
}

int shp_broadcast_to(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0);
  ir_shape t, b;
  char b1[SBUF], b2[SBUF];
  if (list_shape(n, &t, msg, mn) || need_float(n, x, "input", msg, mn)) return -1;
  if (ir_broadcast(&x->shape, &t, &b) || !ir_shape_eq(&b, &t))
    return ir_fail(msg, mn, "broadcast_to: input %s does not broadcast to %s", sh(&x->shape, b1), sh(&t, b2));
  set(n, x->dtype, &t);
  return 0;
}

/* ---- elementwise and softmax ---- */

int shp_unary_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0), *dy = in_(g, n, 1);
  int64_t op = n->attr.i;
  if (op < 0 || op >= IR_NOPS || ir_ops[op].cat != IR_CAT_UNARY || op == IR_CAST)
    return ir_fail(msg, mn, "unary_grad: attribute i = %lld is not a differentiable unary op", (long long)op);
  if (need_float(n, x, "input", msg, mn) || need(n, dy, "dy", &x->shape, x->dtype, msg, mn)) return -1;
  set(n, x->dtype, &x->shape);
  return 0;
}

int shp_softmax_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *y = in_(g, n, 0), *dy = in_(g, n, 1);
  if (need_float(n, y, "y", msg, mn) || need(n, dy, "dy", &y->shape, y->dtype, msg, mn)) return -1;
  if (n->attr.axis < 0 || n->attr.axis >= y->shape.rank)
    return ir_fail(msg, mn, "%s: axis %lld out of range for rank %d", opname(n), (long long)n->attr.axis,
                y->shape.rank);
  set(n, y->dtype, &y->shape);
  return 0;
}

/* The forward max's result shape for x (axis -1 = all; keepdims). */
static int reduced(const ir_node *n, const ir_shape *x, ir_shape *s, char *msg, size_t mn) {
  memset(s, 0, sizeof *s);
  if (n->attr.axis == -1) {
    s->rank = n->attr.keepdims ? x->rank : 0;
    for (int i = 0; i < s->rank; i++) s->d[i] = 1;
    return 0;
  }
  if (n->attr.axis < 0 || n->attr.axis >= x->rank)
    return ir_fail(msg, mn, "%s: axis %lld out of range for rank %d", opname(n), (long long)n->attr.axis, x->rank);
  for (int i = 0; i < x->rank; i++) {
    if (i != n->attr.axis) s->d[s->rank++] = x->d[i];
    else if (n->attr.keepdims) s->d[s->rank++] = 1;
  }
  return 0;
}

int shp_max_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0), *y = in_(g, n, 1), *dy = in_(g, n, 2);
  ir_shape r;
  if (need_float(n, x, "input", msg, mn) || reduced(n, &x->shape, &r, msg, mn) ||
      need(n, y, "y", &r, x->dtype, msg, mn) || need(n, dy, "dy", &r, x->dtype, msg, mn))
    return -1;
  set(n, x->dtype, &x->shape);
  return 0;
}

int shp_layernorm_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0), *w = in_(g, n, 1), *dy = in_(g, n, 2);
  if (x->shape.rank < 1) return ir_fail(msg, mn, "layernorm_grad: input must have rank >= 1");
  ir_shape d = {.rank = 1, .d = {x->shape.d[x->shape.rank - 1]}};
  if (need_float(n, x, "input", msg, mn) || need(n, w, "weight", &d, x->dtype, msg, mn) ||
      need(n, dy, "dy", &x->shape, x->dtype, msg, mn))
    return -1;
  if (n->attr.i != 0 && n->attr.i != 1)
    return ir_fail(msg, mn, "layernorm_grad: i must be 0 (dx) or 1 (dw), got %lld", (long long)n->attr.i);
  set(n, x->dtype, n->attr.i ? &d : &x->shape);
  return 0;
}

/* ---- convolution and pooling ---- */

/* x and w must make a conv2d (ir/conv.h) whose output is dy's shape. */
static int conv_fits(const ir_node *n, const ir_shape *x, const ir_shape *w, const ir_node *dy, char *msg,
                     size_t mn) {
  char b1[SBUF], b2[SBUF];
  ir_conv c;
  if (n->attr.pad > 1 << 20 || n->attr.pad_hi > 1 << 20) return ir_fail(msg, mn, "%s: invalid padding", opname(n));
  if (ir_conv_geom(x, w, &n->attr, &c, msg, mn))
    return ir_fail(msg, mn, "%s: input %s and weight %s do not fit a conv2d", opname(n), sh(x, b1), sh(w, b2));
  ir_shape o = ir_conv_out(&c);
  return need(n, dy, "dy", &o, dy->dtype, msg, mn) || need_float(n, dy, "dy", msg, mn);
}

int shp_conv2d_grad_input(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *dy = in_(g, n, 0), *w = in_(g, n, 1);
  ir_shape x;
  if (list_shape(n, &x, msg, mn) || conv_fits(n, &x, &w->shape, dy, msg, mn) ||
      need(n, w, "weight", &w->shape, dy->dtype, msg, mn))
    return -1;
  set(n, dy->dtype, &x);
  return 0;
}

int shp_conv2d_grad_weight(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0), *dy = in_(g, n, 1);
  ir_shape w;
  if (list_shape(n, &w, msg, mn) || conv_fits(n, &x->shape, &w, dy, msg, mn) ||
      need(n, x, "input", &x->shape, dy->dtype, msg, mn))
    return -1;
  set(n, dy->dtype, &w);
  return 0;
}

int shp_pool2d_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0), *dy = in_(g, n, 1);
  const ir_shape *sx = &x->shape;
  if (n->attr.i != IR_MAXPOOL2D && n->attr.i != IR_AVGPOOL2D)
    return ir_fail(msg, mn, "pool2d_grad: i must name maxpool2d or avgpool2d");
  if ((sx->rank != 4 && sx->rank != 3) || need_float(n, x, "input", msg, mn))
    return ir_fail(msg, mn, "pool2d_grad: input must be rank 4 or 3");
  ir_pool p = ir_pool_geom(sx, &n->attr);
  if (n->attr.k < 1 || p.OH < 1 || p.OW < 1) return ir_fail(msg, mn, "pool2d_grad: the window does not fit the input");
  ir_shape o = {.rank = sx->rank, .d = {sx->d[0], sx->d[1], p.OH, p.OW}};
  if (sx->rank == 3) o.d[2] = p.OW;
  if (need(n, dy, "dy", &o, x->dtype, msg, mn)) return -1;
  set(n, x->dtype, sx);
  return 0;
}

/* ---- movement and losses ---- */

int shp_embedding_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *ids = in_(g, n, 0), *dy = in_(g, n, 1);
  ir_shape w, want;
  if (list_shape(n, &w, msg, mn)) return -1;
  if (!ir_dtype_is_int(ids->dtype) || ids->dtype == IR_BOOL || w.rank != 2 || ids->shape.rank >= IR_MAXDIM)
    return ir_fail(msg, mn, "embedding_grad: needs integer ids and a [V, D] target");
  want = ids->shape;
  want.d[want.rank++] = w.d[1];
  if (need_float(n, dy, "dy", msg, mn) || need(n, dy, "dy", &want, dy->dtype, msg, mn)) return -1;
  set(n, dy->dtype, &w);
  return 0;
}

int shp_slice_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *dy = in_(g, n, 0);
  ir_shape x;
  if (list_shape(n, &x, msg, mn)) return -1;
  int64_t ax = n->attr.axis;
  if (ax < 0 || ax >= x.rank || !(n->attr.start >= 0 && n->attr.start < n->attr.end && n->attr.end <= x.d[ax]))
    return ir_fail(msg, mn, "slice_grad: invalid axis or range");
  ir_shape want = x;
  want.d[ax] = n->attr.end - n->attr.start;
  if (need(n, dy, "dy", &want, dy->dtype, msg, mn)) return -1;
  set(n, dy->dtype, &x);
  return 0;
}

/* index, dy (index's shape) -> list (x's shape); gather's rule read backwards */
int shp_gather_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *ix = in_(g, n, 0), *dy = in_(g, n, 1);
  ir_shape x;
  if (list_shape(n, &x, msg, mn)) return -1;
  int ok = ir_dtype_is_int(ix->dtype) && ix->dtype != IR_BOOL && ix->shape.rank == x.rank && n->attr.axis >= 0 &&
           n->attr.axis < x.rank;
  for (int k = 0; ok && k < x.rank; k++) ok = k == n->attr.axis || ix->shape.d[k] <= x.d[k];
  if (!ok) return ir_fail(msg, mn, "gather_grad: needs an integer index that fits the target off the axis");
  if (need_float(n, dy, "dy", msg, mn) || need(n, dy, "dy", &ix->shape, dy->dtype, msg, mn)) return -1;
  set(n, dy->dtype, &x);
  return 0;
}

int shp_cross_entropy_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *lg = in_(g, n, 0), *lb = in_(g, n, 1), *dl = in_(g, n, 2);
  if (lg->shape.rank < 1 || need_float(n, lg, "logits", msg, mn)) return ir_fail(msg, mn, "%s: bad logits", opname(n));
  ir_shape want = lg->shape;
  want.rank--;
  if (!ir_dtype_is_int(lb->dtype) || lb->dtype == IR_BOOL || !ir_shape_eq(&lb->shape, &want))
    return ir_fail(msg, mn, "%s: labels must be integers shaped like the logits without classes", opname(n));
  if (need_scalar(n, dl, msg, mn)) return -1;
  if (n->op == IR_NLL_GRAD ? n->nin != 3 : n->nin != 3 && n->nin != 4)
    return ir_fail(msg, mn, "%s: expects %s inputs, got %d", opname(n), n->op == IR_NLL_GRAD ? "3" : "3 or 4", n->nin);
  if (n->nin == 4 && ir_ce_weight_check(g, n, msg, mn)) return -1;
  set(n, lg->dtype, &lg->shape);
  return 0;
}

int shp_bce_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0), *y = in_(g, n, 1), *dl = in_(g, n, 2);
  if (need_float(n, x, "prediction", msg, mn) || need(n, y, "target", &x->shape, x->dtype, msg, mn) ||
      need_scalar(n, dl, msg, mn))
    return -1;
  set(n, x->dtype, &x->shape);
  return 0;
}

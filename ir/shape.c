/* shape.c -- shape helpers and the shape rule of every op (named in ops.def).
 *
 * A rule reads its inputs from g->nodes, checks them, and sets n->dtype and
 * n->shape; on a mismatch it writes "op: what is wrong (expected vs got)" to
 * msg and returns -1. The frontend prefixes the tensor name and the source
 * location. Every product of dimensions goes through ir_numel, which refuses
 * overflow, so no rule can be tricked into wrapping arithmetic. ir_add checks
 * the element limit of every result after the rule has run.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "conv.h"
#include "ir.h"

/* Element count, or -1 when the shape is not a valid tensor shape: rank out of
 * 0..IR_MAXDIM, a dimension < 1, or more than IR_MAX_ELEMS elements. */
int64_t ir_numel(const ir_shape *s) {
  if (s->rank < 0 || s->rank > IR_MAXDIM) return -1;
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) {
    if (s->d[i] < 1 || __builtin_mul_overflow(n, s->d[i], &n) || n > IR_MAX_ELEMS) return -1;
  }
  return n;
}

int ir_shape_eq(const ir_shape *a, const ir_shape *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank && i < IR_MAXDIM; i++)
    if (a->d[i] != b->d[i]) return 0;
  return 1;
}

char *ir_shape_str(const ir_shape *s, char *buf, size_t n) {
  size_t at = 0;
  if (n == 0) return buf;
  buf[0] = '\0';
  int r = s->rank < 0 ? 0 : s->rank > IR_MAXDIM ? IR_MAXDIM : s->rank;
  at += (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < r && at < n; i++)
    at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? ", " : "", (long long)s->d[i]);
  if (at < n) snprintf(buf + at, n - at, "]");
  return buf;
}

int ir_broadcast(const ir_shape *a, const ir_shape *b, ir_shape *out) {
  ir_shape r = {0};
  r.rank = a->rank > b->rank ? a->rank : b->rank;
  if (a->rank < 0 || b->rank < 0 || r.rank > IR_MAXDIM) return -1;
  for (int i = 0; i < r.rank; i++) {
    /* align from the right; a missing dimension acts as 1 */
    int ia = a->rank - r.rank + i, ib = b->rank - r.rank + i;
    int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
    if (da != db && da != 1 && db != 1) return -1;
    r.d[i] = da == 1 ? db : da;
  }
  *out = r;
  return 0;
}

/* ---- helpers for the rules ---- */

#define SBUF 200 /* holds "bool[" + 8 dims of 20 digits with separators */

static const char *opname(const ir_node *n) { return ir_ops[n->op].name; }
static const ir_node *in_(const ir_graph *g, const ir_node *n, int k) { return &g->nodes[n->in[k]]; }
static const char *sh(const ir_shape *s, char *buf) { return ir_shape_str(s, buf, SBUF); }

/* "f32[2, 3]" */
static const char *tstr(const ir_node *x, char *buf) {
  char tmp[SBUF];
  snprintf(buf, SBUF, "%s%s", ir_dtype_name(x->dtype), sh(&x->shape, tmp));
  return buf;
}

static ir_shape shape1(int64_t a) { ir_shape s = {.rank = 1, .d = {a}}; return s; }
static ir_shape shape2(int64_t a, int64_t b) { ir_shape s = {.rank = 2, .d = {a, b}}; return s; }

static void set(ir_node *n, ir_dtype t, const ir_shape *s) {
  n->dtype = t;
  n->shape = *s;
}

static int need_float(const ir_node *n, const ir_node *x, const char *what, char *msg, size_t mn) {
  char b[SBUF];
  if (ir_dtype_is_float(x->dtype)) return 0;
  return ir_fail(msg, mn, "%s: %s must be floating-point, got %s", opname(n), what, tstr(x, b));
}

static int need_same_dtype(const ir_node *n, const ir_node *a, const ir_node *b, char *msg,
                           size_t mn) {
  if (a->dtype == b->dtype) return 0;
  return ir_fail(msg, mn, "%s: dtypes differ: %s vs %s", opname(n), ir_dtype_name(a->dtype),
              ir_dtype_name(b->dtype));
}

/* A parameter-like input must have exactly the shape `want` and x's dtype. */
static int need_shape(const ir_node *n, const ir_node *p, const char *what, const ir_shape *want,
                      ir_dtype t, char *msg, size_t mn) {
  char b1[SBUF], b2[SBUF];
  if (!ir_shape_eq(&p->shape, want))
    return ir_fail(msg, mn, "%s: %s must be %s, got %s", opname(n), what, sh(want, b1),
                sh(&p->shape, b2));
  if (p->dtype != t)
    return ir_fail(msg, mn, "%s: %s must be %s, got %s", opname(n), what, ir_dtype_name(t),
                ir_dtype_name(p->dtype));
  return 0;
}

static int need_axis(const ir_node *n, int64_t axis, int rank, char *msg, size_t mn) {
  if (axis >= 0 && axis < rank) return 0;
  return ir_fail(msg, mn, "%s: axis %lld out of range for rank %d", opname(n), (long long)axis, rank);
}

/* ---- leaves ---- */

/* INPUT, PARAM and CONST get their type from ir_add_*; ARANGE is i32[n]. */
int shp_leaf(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  (void)g;
  if (n->op != IR_ARANGE) return 0;
  if (n->attr.n < 1)
    return ir_fail(msg, mn, "arange: length must be >= 1, got %lld", (long long)n->attr.n);
  ir_shape s = shape1(n->attr.n);
  set(n, IR_I32, &s);
  return 0;
}

/* ---- elementwise ---- */

int shp_unary_float(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0);
  if (need_float(n, x, "input", msg, mn)) return -1;
  /* softmax and log_softmax share this rule and work along an axis */
  if (ir_ops[n->op].cat == IR_CAT_REDUCE && need_axis(n, n->attr.axis, x->shape.rank, msg, mn))
    return -1;
  if (n->op == IR_DROPOUT && !(n->attr.f >= 0 && n->attr.f < 1))
    return ir_fail(msg, mn, "dropout: p must be in [0, 1), got %g", n->attr.f);
  set(n, x->dtype, &x->shape);
  return 0;
}

/* abs and neg: any number, not bool */
int shp_unary_num(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0);
  char b[SBUF];
  if (x->dtype == IR_BOOL)
    return ir_fail(msg, mn, "%s: input must be numeric, got %s", opname(n), tstr(x, b));
  set(n, x->dtype, &x->shape);
  return 0;
}

int shp_cast(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0);
  if (n->attr.i < 0 || n->attr.i >= IR_NDTYPES)
    return ir_fail(msg, mn, "cast: unknown target dtype %lld", (long long)n->attr.i);
  set(n, (ir_dtype)n->attr.i, &x->shape);
  return 0;
}

int shp_broadcast(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *a = in_(g, n, 0), *b = in_(g, n, 1);
  char b1[SBUF], b2[SBUF];
  ir_shape s;
  if (need_same_dtype(n, a, b, msg, mn)) return -1;
  if (ir_broadcast(&a->shape, &b->shape, &s))
    return ir_fail(msg, mn, "%s: shapes do not broadcast: %s and %s", opname(n), sh(&a->shape, b1),
                sh(&b->shape, b2));
  set(n, a->dtype, &s);
  return 0;
}

/* where(cond, a, b): cond bool, a and b of one dtype, all three broadcast */
int shp_where(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *c = in_(g, n, 0), *a = in_(g, n, 1), *b = in_(g, n, 2);
  char b1[SBUF], b2[SBUF], b3[SBUF];
  ir_shape s, t;
  if (c->dtype != IR_BOOL)
    return ir_fail(msg, mn, "where: condition must be bool, got %s", ir_dtype_name(c->dtype));
  if (need_same_dtype(n, a, b, msg, mn)) return -1;
  if (ir_broadcast(&c->shape, &a->shape, &t) || ir_broadcast(&t, &b->shape, &s))
    return ir_fail(msg, mn, "where: shapes do not broadcast: %s, %s and %s", sh(&c->shape, b1), sh(&a->shape, b2),
                   sh(&b->shape, b3));
  set(n, a->dtype, &s);
  return 0;
}

/* comparisons: the broadcast shape, bool */
int shp_compare(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  if (shp_broadcast(g, n, msg, mn)) return -1;
  n->dtype = IR_BOOL;
  return 0;
}

/* ---- contractions ---- */

/* An operand as the messages show it: "[3, 2]" or, flagged, "[3, 2]^T". */
static const char *mm_operand(const ir_shape *s, int flagged, char *buf) {
  ir_shape_str(s, buf, SBUF - 2);
  if (flagged) strcat(buf, "^T");
  return buf;
}

/* The operand the product reads: s with its last two axes swapped when
 * flagged (a rank-1 operand is never flagged: shp_matmul refuses it). */
static ir_shape mm_view(const ir_shape *s, int flagged) {
  ir_shape v = *s;
  if (flagged) v.d[v.rank - 2] = s->d[s->rank - 1], v.d[v.rank - 1] = s->d[s->rank - 2];
  return v;
}

static int mm_flags(const ir_node *n, const ir_shape *sa, const ir_shape *sb, char *msg, size_t mn) {
  char b1[SBUF];
  int64_t f = n->attr.i;
  if (f & ~(int64_t)(IR_MM_TA | IR_MM_TB))
    return ir_fail(msg, mn, "matmul: unknown flags %lld (1 = transpose a, 2 = transpose b)", (long long)f);
  if ((f & IR_MM_TA) && sa->rank < 2)
    return ir_fail(msg, mn, "matmul: a transposed left operand needs rank >= 2, got %s", sh(sa, b1));
  if ((f & IR_MM_TB) && sb->rank < 2)
    return ir_fail(msg, mn, "matmul: a transposed right operand needs rank >= 2, got %s", sh(sb, b1));
  return 0;
}

/* numpy.matmul of the operands as read (a flagged operand's last two axes
 * swapped, attr.i): a 1-D left operand is a row [1, k], a 1-D right operand
 * a column [k, 1], and the added dimension is dropped from the result;
 * leading (batch) dimensions broadcast. */
int shp_matmul(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *a = in_(g, n, 0), *b = in_(g, n, 1);
  int ta = (n->attr.i & IR_MM_TA) != 0, tb = (n->attr.i & IR_MM_TB) != 0;
  char b1[SBUF], b2[SBUF];
  if (a->shape.rank < 1 || b->shape.rank < 1)
    return ir_fail(msg, mn, "matmul: operands must have rank >= 1, got %s @ %s", sh(&a->shape, b1),
                   sh(&b->shape, b2));
  if (mm_flags(n, &a->shape, &b->shape, msg, mn)) return -1;
  if (need_float(n, a, "left operand", msg, mn) || need_float(n, b, "right operand", msg, mn) ||
      need_same_dtype(n, a, b, msg, mn))
    return -1;
  ir_shape va = mm_view(&a->shape, ta), vb = mm_view(&b->shape, tb);
  const ir_shape *sa = &va, *sb = &vb;
  int64_t ka = sa->d[sa->rank - 1], kb = sb->rank == 1 ? sb->d[0] : sb->d[sb->rank - 2];
  if (ka != kb)
    return ir_fail(msg, mn, "matmul: inner dimensions differ: %s @ %s (%lld vs %lld)",
                   mm_operand(&a->shape, ta, b1), mm_operand(&b->shape, tb, b2), (long long)ka, (long long)kb);
  ir_shape ba = {0}, bb = {0}, s;
  ba.rank = sa->rank > 2 ? sa->rank - 2 : 0;
  bb.rank = sb->rank > 2 ? sb->rank - 2 : 0;
  memcpy(ba.d, sa->d, sizeof(int64_t) * (size_t)ba.rank);
  memcpy(bb.d, sb->d, sizeof(int64_t) * (size_t)bb.rank);
  if (ir_broadcast(&ba, &bb, &s))
    return ir_fail(msg, mn, "matmul: batch dimensions do not broadcast: %s @ %s", mm_operand(&a->shape, ta, b1),
                   mm_operand(&b->shape, tb, b2));
  if (sa->rank >= 2) s.d[s.rank++] = sa->d[sa->rank - 2];
  if (sb->rank >= 2) s.d[s.rank++] = sb->d[sb->rank - 1];
  set(n, a->dtype, &s);
  return 0;
}

int shp_conv2d(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0), *w = in_(g, n, 1);
  ir_conv c;
  if (ir_conv_geom(&x->shape, &w->shape, &n->attr, &c, msg, mn)) return -1;
  if (need_float(n, x, "input", msg, mn) || need_same_dtype(n, x, w, msg, mn)) return -1;
  if (n->nin == 3) {
    ir_shape want = shape1(c.O);
    if (need_shape(n, in_(g, n, 2), "bias", &want, x->dtype, msg, mn)) return -1;
  }
  ir_shape s = ir_conv_out(&c);
  set(n, x->dtype, &s);
  return 0;
}

/* ---- reductions and normalisations ---- */

/* sum, mean, max over attr.axis, or over everything when axis == -1 */
int shp_reduce(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0);
  char b[SBUF];
  if (x->dtype == IR_BOOL)
    return ir_fail(msg, mn, "%s: input must be numeric, got %s", opname(n), tstr(x, b));
  if (n->op == IR_MEAN && need_float(n, x, "input", msg, mn)) return -1;
  ir_shape s = {0};
  if (n->attr.axis == -1) {
    s.rank = n->attr.keepdims ? x->shape.rank : 0;
    for (int i = 0; i < s.rank; i++) s.d[i] = 1;
  } else {
    if (need_axis(n, n->attr.axis, x->shape.rank, msg, mn)) return -1;
    for (int i = 0; i < x->shape.rank; i++) {
      if (i != n->attr.axis) s.d[s.rank++] = x->shape.d[i];
      else if (n->attr.keepdims) s.d[s.rank++] = 1;
    }
  }
  set(n, x->dtype, &s);
  return 0;
}

/* argmax / argmin: shaped as the reduction, i32 indices */
int shp_argext(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  if (shp_reduce(g, n, msg, mn)) return -1;
  n->dtype = IR_I32;
  return 0;
}

int shp_layernorm(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0);
  char b[SBUF];
  if (x->shape.rank < 1)
    return ir_fail(msg, mn, "layernorm: input must have rank >= 1, got %s", tstr(x, b));
  if (need_float(n, x, "input", msg, mn)) return -1;
  ir_shape d = shape1(x->shape.d[x->shape.rank - 1]);
  if (need_shape(n, in_(g, n, 1), "weight", &d, x->dtype, msg, mn) ||
      need_shape(n, in_(g, n, 2), "bias", &d, x->dtype, msg, mn))
    return -1;
  set(n, x->dtype, &x->shape);
  return 0;
}

int shp_pool2d(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0);
  const ir_shape *sx = &x->shape;
  char b[SBUF];
  if (sx->rank != 4 && sx->rank != 3)
    return ir_fail(msg, mn, "%s: input must be rank 4 [N, C, H, W] or rank 3 [N, C, L], got %s", opname(n),
                   sh(sx, b));
  if (need_float(n, x, "input", msg, mn)) return -1;
  if (n->attr.k < 1 || n->attr.stride < 1)
    return ir_fail(msg, mn, "%s: kernel and stride must be >= 1, got %lld and %lld", opname(n),
                (long long)n->attr.k, (long long)n->attr.stride);
  ir_pool p = ir_pool_geom(sx, &n->attr); /* ir/conv.h: the 1-d form is H = 1 */
  if (p.OH < 1 || p.OW < 1) {
    if (sx->rank == 3)
      return ir_fail(msg, mn, "%s: kernel %lld does not fit input length %lld", opname(n), (long long)n->attr.k,
                     (long long)sx->d[2]);
    return ir_fail(msg, mn, "%s: kernel %lld does not fit input %lldx%lld", opname(n),
                (long long)n->attr.k, (long long)sx->d[2], (long long)sx->d[3]);
  }
  ir_shape s = {.rank = sx->rank, .d = {sx->d[0], sx->d[1], p.OH, p.OW}};
  if (sx->rank == 3) s.d[2] = p.OW;
  set(n, x->dtype, &s);
  return 0;
}

/* ---- data movement ---- */

int shp_reshape(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0);
  char b1[SBUF], b2[SBUF];
  if (n->attr.nlist < 0 || n->attr.nlist > IR_MAXDIM)
    return ir_fail(msg, mn, "reshape: rank must be 0..%d, got %d", IR_MAXDIM, n->attr.nlist);
  ir_shape s = {.rank = n->attr.nlist};
  memcpy(s.d, n->attr.list, sizeof(int64_t) * (size_t)s.rank);
  int64_t have = ir_numel(&x->shape), want = ir_numel(&s);
  if (want < 0)
    return ir_fail(msg, mn, "reshape: invalid target shape %s", sh(&s, b1));
  if (have != want)
    return ir_fail(msg, mn, "reshape: cannot reshape %s (%lld elements) into %s (%lld elements)",
                sh(&x->shape, b1), (long long)have, sh(&s, b2), (long long)want);
  set(n, x->dtype, &s);
  return 0;
}

/* out.d[i] = in.d[perm[i]], as numpy.transpose */
int shp_transpose(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0);
  int r = x->shape.rank, seen[IR_MAXDIM] = {0};
  int np = n->attr.nlist < 0 || n->attr.nlist > IR_MAXDIM ? 0 : n->attr.nlist;
  ir_shape s = {.rank = r}, p = {.rank = np};
  char b1[SBUF], b2[SBUF];
  memcpy(p.d, n->attr.list, sizeof(int64_t) * (size_t)p.rank);
  int ok = n->attr.nlist == r;
  for (int i = 0; ok && i < r; i++) {
    int64_t a = n->attr.list[i];
    ok = a >= 0 && a < r && !seen[a];
    if (ok) {
      seen[a] = 1;
      s.d[i] = x->shape.d[a];
    }
  }
  if (!ok)
    return ir_fail(msg, mn, "transpose: %s is not a permutation of the %d axes of %s", sh(&p, b1), r,
                sh(&x->shape, b2));
  set(n, x->dtype, &s);
  return 0;
}

int shp_concat(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *a = in_(g, n, 0);
  char b1[SBUF], b2[SBUF];
  if (need_axis(n, n->attr.axis, a->shape.rank, msg, mn)) return -1;
  ir_shape s = a->shape;
  int ax = (int)n->attr.axis;
  for (int k = 1; k < n->nin; k++) {
    const ir_node *b = in_(g, n, k);
    if (b->dtype != a->dtype)
      return ir_fail(msg, mn, "concat: dtypes differ: input 0 is %s, input %d is %s",
                  ir_dtype_name(a->dtype), k, ir_dtype_name(b->dtype));
    int same = b->shape.rank == a->shape.rank;
    for (int i = 0; same && i < a->shape.rank; i++) same = i == ax || b->shape.d[i] == a->shape.d[i];
    if (!same)
      return ir_fail(msg, mn, "concat: input %d %s does not match input 0 %s outside axis %d", k,
                  sh(&b->shape, b2), sh(&a->shape, b1), ax);
    if (__builtin_add_overflow(s.d[ax], b->shape.d[ax], &s.d[ax]) || s.d[ax] > IR_MAX_ELEMS)
      return ir_fail(msg, mn, "concat: axis %d grows beyond %lld", ax, (long long)IR_MAX_ELEMS);
  }
  set(n, a->dtype, &s);
  return 0;
}

int shp_slice(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0);
  if (need_axis(n, n->attr.axis, x->shape.rank, msg, mn)) return -1;
  int64_t dim = x->shape.d[n->attr.axis], lo = n->attr.start, hi = n->attr.end;
  if (!(lo >= 0 && lo < hi && hi <= dim))
    return ir_fail(msg, mn, "slice: range %lld:%lld is empty or outside axis %lld of size %lld",
                (long long)lo, (long long)hi, (long long)n->attr.axis, (long long)dim);
  ir_shape s = x->shape;
  s.d[n->attr.axis] = hi - lo;
  set(n, x->dtype, &s);
  return 0;
}

/* ids of any shape (integers) -> f32 ids.shape + [n]: one row per id. */
int shp_one_hot(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *ids = in_(g, n, 0);
  char b[SBUF];
  if (!ir_dtype_is_int(ids->dtype) || ids->dtype == IR_BOOL)
    return ir_fail(msg, mn, "one_hot: ids must be integers, got %s", tstr(ids, b));
  if (n->attr.n < 1 || n->attr.n > IR_MAX_ELEMS)
    return ir_fail(msg, mn, "one_hot: number of classes must be >= 1, got %lld", (long long)n->attr.n);
  if (ids->shape.rank >= IR_MAXDIM)
    return ir_fail(msg, mn, "one_hot: ids rank %d leaves no room for the class axis", ids->shape.rank);
  ir_shape s = ids->shape;
  s.d[s.rank++] = n->attr.n;
  if (ir_numel(&s) < 0 || ir_numel(&s) > IR_MAX_ELEMS)
    return ir_fail(msg, mn, "one_hot: result %s is too large", sh(&s, b));
  set(n, IR_F32, &s);
  return 0;
}

/* torch.gather: out[.., i, ..] = x[.., index[.., i, ..], ..] along the axis;
 * the result has index's shape, which must fit in x's off the axis. */
int shp_gather(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0), *ix = in_(g, n, 1);
  char b1[SBUF], b2[SBUF];
  if (!ir_dtype_is_int(ix->dtype) || ix->dtype == IR_BOOL)
    return ir_fail(msg, mn, "gather: index must be integers, got %s", tstr(ix, b1));
  if (x->dtype == IR_BOOL) return ir_fail(msg, mn, "gather: input must be numeric, got %s", tstr(x, b1));
  if (need_axis(n, n->attr.axis, x->shape.rank, msg, mn)) return -1;
  int ok = ix->shape.rank == x->shape.rank;
  for (int k = 0; ok && k < x->shape.rank; k++) ok = k == n->attr.axis || ix->shape.d[k] <= x->shape.d[k];
  if (!ok)
    return ir_fail(msg, mn, "gather: index %s must have the rank of input %s and no larger size off axis %lld",
                   sh(&ix->shape, b1), sh(&x->shape, b2), (long long)n->attr.axis);
  set(n, x->dtype, &ix->shape);
  return 0;
}

/* ids of any shape (integers) index the rows of weight[V, D] */
int shp_embedding(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *ids = in_(g, n, 0), *w = in_(g, n, 1);
  char b[SBUF];
  if (!ir_dtype_is_int(ids->dtype) || ids->dtype == IR_BOOL)
    return ir_fail(msg, mn, "embedding: ids must be integers, got %s", tstr(ids, b));
  if (w->shape.rank != 2)
    return ir_fail(msg, mn, "embedding: weight must be [vocab, dim], got %s", sh(&w->shape, b));
  if (need_float(n, w, "weight", msg, mn)) return -1;
  if (ids->shape.rank >= IR_MAXDIM)
    return ir_fail(msg, mn, "embedding: ids rank %d leaves no room for the embedding axis",
                ids->shape.rank);
  ir_shape s = ids->shape;
  s.d[s.rank++] = w->shape.d[1];
  set(n, w->dtype, &s);
  return 0;
}

/* ---- sequence layers ---- */

static int need_seq(const ir_node *n, const ir_node *x, char *msg, size_t mn) {
  char b[SBUF];
  if (x->shape.rank != 3)
    return ir_fail(msg, mn, "%s: input must be rank 3 [batch, T, features], got %s", opname(n),
                sh(&x->shape, b));
  return need_float(n, x, "input", msg, mn);
}

int shp_attention(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0);
  if (need_seq(n, x, msg, mn)) return -1;
  int64_t d = x->shape.d[2], h = n->attr.heads;
  if (h < 1 || d % h != 0)
    return ir_fail(msg, mn, "attention: model dimension %lld is not divisible by %lld heads",
                (long long)d, (long long)h);
  ir_shape qkv_w = shape2(d, 3 * d), qkv_b = shape1(3 * d), pw = shape2(d, d), pb = shape1(d);
  if (need_shape(n, in_(g, n, 1), "qkv weight", &qkv_w, x->dtype, msg, mn) ||
      need_shape(n, in_(g, n, 2), "qkv bias", &qkv_b, x->dtype, msg, mn) ||
      need_shape(n, in_(g, n, 3), "proj weight", &pw, x->dtype, msg, mn) ||
      need_shape(n, in_(g, n, 4), "proj bias", &pb, x->dtype, msg, mn))
    return -1;
  set(n, x->dtype, &x->shape);
  return 0;
}

/* rnn, lstm, gru: x[B,T,in], w_ih[in, G*h], w_hh[h, G*h], then nbias biases
 * [G*h]; h comes from w_hh's first dimension. G = gates per cell. */
static int shp_recurrent(ir_graph *g, ir_node *n, int gates, int nbias, char *msg, size_t mn) {
  const ir_node *x = in_(g, n, 0), *whh = in_(g, n, 2);
  char b[SBUF];
  if (need_seq(n, x, msg, mn)) return -1;
  if (whh->shape.rank != 2)
    return ir_fail(msg, mn, "%s: w_hh must be rank 2 [h, %d*h], got %s", opname(n), gates,
                sh(&whh->shape, b));
  int64_t h = whh->shape.d[0], gh = gates * h; /* h <= 2^40: no overflow */
  ir_shape w_ih = shape2(x->shape.d[2], gh), w_hh = shape2(h, gh), bias = shape1(gh);
  if (need_shape(n, in_(g, n, 1), "w_ih", &w_ih, x->dtype, msg, mn) ||
      need_shape(n, whh, "w_hh", &w_hh, x->dtype, msg, mn))
    return -1;
  for (int k = 0; k < nbias; k++)
    if (need_shape(n, in_(g, n, 3 + k), nbias == 1 ? "bias" : k ? "b_hh" : "b_ih", &bias,
                   x->dtype, msg, mn))
      return -1;
  ir_shape s = {.rank = 3, .d = {x->shape.d[0], x->shape.d[1], h}};
  set(n, x->dtype, &s);
  return 0;
}

int shp_rnn(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  return shp_recurrent(g, n, 1, 1, msg, mn);
}
int shp_lstm(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  return shp_recurrent(g, n, 4, 1, msg, mn);
}
int shp_gru(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  return shp_recurrent(g, n, 3, 2, msg, mn);
}

/* ---- losses: f32 scalars ---- */

int shp_cross_entropy(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *lg = in_(g, n, 0), *lb = in_(g, n, 1);
  char b1[SBUF], b2[SBUF], b3[SBUF];
  if (lg->shape.rank < 1)
    return ir_fail(msg, mn, "%s: logits must have rank >= 1 [..., classes], got %s",
                opname(n), tstr(lg, b1));
  if (need_float(n, lg, "logits", msg, mn)) return -1;
  if (!ir_dtype_is_int(lb->dtype) || lb->dtype == IR_BOOL)
    return ir_fail(msg, mn, "%s: labels must be integers, got %s", opname(n), tstr(lb, b1));
  ir_shape want = lg->shape;
  want.rank--;
  if (!ir_shape_eq(&lb->shape, &want))
    return ir_fail(msg, mn, "%s: labels must have shape %s for logits %s, got %s",
                opname(n), sh(&want, b1), sh(&lg->shape, b2), sh(&lb->shape, b3));
  if (!(n->attr.f >= 0 && n->attr.f <= 1))
    return ir_fail(msg, mn, "%s: label smoothing must be in [0, 1], got %g", opname(n), n->attr.f);
  if (n->nin == 3 && ir_ce_weight_check(g, n, msg, mn)) return -1;
  ir_shape s = {0};
  set(n, IR_F32, &s);
  return 0;
}

/* cross_entropy's optional class weights (its third input, the gradient's
 * fourth): f32 [C] for logits [..., C]. */
int ir_ce_weight_check(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *lg = in_(g, n, 0), *w = in_(g, n, n->op == IR_CROSS_ENTROPY ? 2 : 3);
  char b1[SBUF], b2[SBUF];
  if (w->dtype != IR_F32 || w->shape.rank != 1 || w->shape.d[0] != lg->shape.d[lg->shape.rank - 1])
    return ir_fail(msg, mn, "%s: class weights must be f32[%lld] for logits %s, got %s", opname(n),
                   (long long)lg->shape.d[lg->shape.rank - 1], sh(&lg->shape, b1), tstr(w, b2));
  return 0;
}

/* mse and bce: prediction and target of one shape and dtype */
int shp_pair_loss(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *a = in_(g, n, 0), *b = in_(g, n, 1);
  char b1[SBUF], b2[SBUF];
  if (need_float(n, a, "prediction", msg, mn) || need_same_dtype(n, a, b, msg, mn)) return -1;
  if (!ir_shape_eq(&a->shape, &b->shape))
    return ir_fail(msg, mn, "%s: shapes differ: %s vs %s", opname(n), sh(&a->shape, b1),
                sh(&b->shape, b2));
  ir_shape s = {0};
  set(n, IR_F32, &s);
  return 0;
}

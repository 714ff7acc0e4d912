/* shape_norm.c -- shape rules of the channel normalisations (batchnorm,
 * batchnorm_train, groupnorm, rmsnorm) and their gradient norm_grad. The
 * per-channel operands are [C] (axis 1 of x; rmsnorm: the last axis) of x's
 * dtype; a message names the operand, what it must be and what it is. */
#include <stdio.h>

#include "ir.h"

static const ir_node *arg(const ir_graph *g, const ir_node *n, int k) { return &g->nodes[n->in[k]]; }

static const char *tstr(const ir_node *x, char *b, size_t nb) {
  char s[160];
  snprintf(b, nb, "%s%s", ir_dtype_name(x->dtype), ir_shape_str(&x->shape, s, sizeof s));
  return b;
}

static int need_input(const ir_node *n, const ir_node *x, int min_rank, const char *what, char *msg, size_t mn) {
  char b[200];
  if (x->shape.rank < min_rank)
    return ir_fail(msg, mn, "%s: input must be %s, got %s", ir_ops[n->op].name, what, tstr(x, b, sizeof b));
  if (!ir_dtype_is_float(x->dtype))
    return ir_fail(msg, mn, "%s: input must be floating-point, got %s", ir_ops[n->op].name, tstr(x, b, sizeof b));
  return 0;
}

/* inputs first..last of n must be [c] of dtype t; names[] says what each is */
static int need_per_channel(const ir_graph *g, const ir_node *n, int first, int last, int64_t c, ir_dtype t,
                            const char *const *names, char *msg, size_t mn) {
  ir_shape want = {.rank = 1, .d = {c}};
  char b1[160], b2[200];
  for (int k = first; k <= last; k++) {
    const ir_node *p = arg(g, n, k);
    if (!ir_shape_eq(&p->shape, &want) || p->dtype != t)
      return ir_fail(msg, mn, "%s: %s must be %s%s, got %s", ir_ops[n->op].name, names[k - first], ir_dtype_name(t),
                     ir_shape_str(&want, b1, sizeof b1), tstr(p, b2, sizeof b2));
  }
  return 0;
}

static int need_eps(const ir_node *n, char *msg, size_t mn) {
  if (n->attr.f > 0) return 0;
  return ir_fail(msg, mn, "%s: eps must be positive, got %g", ir_ops[n->op].name, n->attr.f);
}

static const char *const wbmv[] = {"weight", "bias", "running_mean", "running_var"};

/* batchnorm: x, weight, bias, running_mean, running_var; batchnorm_train: the first three */
int shp_batchnorm(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = arg(g, n, 0);
  if (need_input(n, x, 2, "[N, C] or [N, C, ...]", msg, mn) ||
      need_per_channel(g, n, 1, n->nin - 1, x->shape.d[1], x->dtype, wbmv, msg, mn) || need_eps(n, msg, mn))
    return -1;
  if (n->op == IR_BATCHNORM && !(n->attr.f2 >= 0 && n->attr.f2 <= 1))
    return ir_fail(msg, mn, "batchnorm: momentum must be in [0, 1], got %g", n->attr.f2);
  n->dtype = x->dtype, n->shape = x->shape;
  return 0;
}

int shp_groupnorm(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = arg(g, n, 0);
  if (need_input(n, x, 2, "[N, C] or [N, C, ...]", msg, mn)) return -1;
  int64_t c = x->shape.d[1], k = n->attr.k;
  if (k < 1 || c % k)
    return ir_fail(msg, mn, "groupnorm: groups must divide the %lld channels, got %lld", (long long)c, (long long)k);
  if (need_per_channel(g, n, 1, 2, c, x->dtype, wbmv, msg, mn) || need_eps(n, msg, mn)) return -1;
  n->dtype = x->dtype, n->shape = x->shape;
  return 0;
}

int shp_rmsnorm(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = arg(g, n, 0);
  if (need_input(n, x, 1, "a tensor of rank >= 1", msg, mn) ||
      need_per_channel(g, n, 1, 1, x->shape.d[x->shape.rank - 1], x->dtype, wbmv, msg, mn) || need_eps(n, msg, mn))
    return -1;
  n->dtype = x->dtype, n->shape = x->shape;
  return 0;
}

/* norm_grad: x, w, dy; the forward op in k, its groups in n */
int shp_norm_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *x = arg(g, n, 0), *dy = arg(g, n, 2);
  int fwd = (int)n->attr.k;
  if (fwd != IR_BATCHNORM_TRAIN && fwd != IR_GROUPNORM && fwd != IR_RMSNORM)
    return ir_fail(msg, mn, "norm_grad: k must name batchnorm_train, groupnorm or rmsnorm, got %lld",
                   (long long)n->attr.k);
  if (n->attr.i < 0 || n->attr.i > 2 || (fwd == IR_RMSNORM && n->attr.i == 2))
    return ir_fail(msg, mn, "norm_grad: i must be 0 (dx), 1 (dw) or 2 (db, not rmsnorm), got %lld",
                   (long long)n->attr.i);
  if (need_input(n, x, fwd == IR_RMSNORM ? 1 : 2, "of the forward's rank", msg, mn)) return -1;
  int64_t c = fwd == IR_RMSNORM ? x->shape.d[x->shape.rank - 1] : x->shape.d[1];
  if (fwd == IR_GROUPNORM && (n->attr.n < 1 || c % n->attr.n))
    return ir_fail(msg, mn, "norm_grad: groups must divide the %lld channels, got %lld", (long long)c,
                   (long long)n->attr.n);
  char b1[200], b2[200];
  if (!ir_shape_eq(&dy->shape, &x->shape) || dy->dtype != x->dtype)
    return ir_fail(msg, mn, "norm_grad: dy must be %s, got %s", tstr(x, b1, sizeof b1), tstr(dy, b2, sizeof b2));
  if (need_per_channel(g, n, 1, 1, c, x->dtype, wbmv, msg, mn) || need_eps(n, msg, mn)) return -1;
  n->dtype = x->dtype;
  n->shape = n->attr.i ? arg(g, n, 1)->shape : x->shape;
  return 0;
}
